"""Versioned schema migrations, applied at start-up, safe under concurrent starts.

Version 0 installs procrastinate's own schema; numbered files under `sql/migrations/` follow.
Each migration runs in its own transaction while holding a transaction-level advisory lock,
so N processes starting together apply each migration exactly once.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x70726570  # "prep": one advisory lock for all migration runs
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def _migration_files() -> list[tuple[int, str, str]]:
    folder = resources.files("prepshelf.store") / "sql" / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _procrastinate_schema() -> str:
    from procrastinate.schema import SchemaManager

    return SchemaManager.get_schema()


def apply_migrations(url: str) -> list[str]:
    """Apply every pending migration; return the names applied by this call."""
    applied_now: list[str] = []
    steps = [(0, "0000_procrastinate", None), *_migration_files()]
    with psycopg.connect(url, autocommit=True) as conn:
        for version, name, sql in steps:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
                conn.execute(
                    """CREATE TABLE IF NOT EXISTS prepshelf_migrations (
                           version int PRIMARY KEY,
                           name text NOT NULL,
                           applied_at timestamptz NOT NULL DEFAULT now())"""
                )
                row = conn.execute(
                    "SELECT 1 FROM prepshelf_migrations WHERE version = %s", [version]
                ).fetchone()
                if row:
                    continue
                conn.execute(sql if sql is not None else _procrastinate_schema())
                conn.execute(
                    "INSERT INTO prepshelf_migrations (version, name) VALUES (%s, %s)",
                    [version, name],
                )
                applied_now.append(name)
                log.info("applied migration %s", name)
    return applied_now
