"""Persistence: PostgreSQL schema, migrations and queries; blob storage."""
