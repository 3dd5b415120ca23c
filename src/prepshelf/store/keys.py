"""Projects and their API keys. A key is shown once at creation and stored only as a hash.

Keys are 256-bit random strings, so a plain SHA-256 digest is enough: there is nothing to
brute-force that a slow hash would protect. Lookups go through the unique index on the digest.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

import psycopg
from psycopg import AsyncConnection

from prepshelf.domain.keys import ActiveKey, ApiKey, Project
from prepshelf.errors import ConflictError, InvalidRequestError
from prepshelf.store.pages import Page, PageRequest, fetch_page
from prepshelf.store.rows import typed

DEFAULT_PROJECT = "default"
KEY_PREFIX = "sk-prepshelf-"
# What `new_key` makes (43 URL-safe characters after the prefix, some slack for the future):
# anything else is refused without a database lookup.
_KEY_SHAPE = re.compile(r"^sk-prepshelf-[A-Za-z0-9_-]{32,64}$")
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DISPLAY_CHARS = len(KEY_PREFIX) + 4
_TOUCH_EVERY_S = 60  # last_used_at is coarse: one write per key per minute at most


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    """The part of a key that may be shown (lists, logs): enough to tell keys apart."""
    return key[:_DISPLAY_CHARS]


def has_key_shape(key: str) -> bool:
    return _KEY_SHAPE.match(key) is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_project_name(name: str) -> str:
    if not _PROJECT_NAME.match(name):
        raise InvalidRequestError(
            "Invalid project name: 1-64 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            param="name",
        )
    return name


async def create_project(conn: AsyncConnection[Any], *, name: str) -> Project:
    check_project_name(name)
    try:
        cur = await conn.execute(
            "INSERT INTO projects (id, name) VALUES (%s, %s) RETURNING *",
            ["proj_" + secrets.token_hex(12), name],
        )
    except psycopg.errors.UniqueViolation as exc:
        raise ConflictError(f"A project named {name!r} already exists", param="name") from exc
    row = await cur.fetchone()
    assert row is not None
    return typed(Project, row)


async def get_project(conn: AsyncConnection[Any], *, project_id: str) -> Project | None:
    cur = await conn.execute("SELECT * FROM projects WHERE id = %s", [project_id])
    row = await cur.fetchone()
    return typed(Project, row) if row else None


async def get_project_by_name(conn: AsyncConnection[Any], *, name: str) -> Project | None:
    cur = await conn.execute("SELECT * FROM projects WHERE name = %s", [name])
    row = await cur.fetchone()
    return typed(Project, row) if row else None


async def list_projects(conn: AsyncConnection[Any], *, page: PageRequest) -> Page[Project]:
    result = await fetch_page(
        conn,
        select="SELECT * FROM projects",
        where="true",
        params=[],
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM projects WHERE id = %s",
        cursor_params=[],
        page=page,
    )
    return result.map(lambda row: typed(Project, row))


async def create_key(
    conn: AsyncConnection[Any], *, project_id: str, name: str | None, is_admin: bool
) -> tuple[ApiKey, str]:
    """Insert a new key; return it and the secret (the only time the secret exists)."""
    secret = new_key()
    cur = await conn.execute(
        """INSERT INTO api_keys (id, project_id, name, key_hash, prefix, is_admin)
           VALUES (%s, %s, %s, %s, %s, %s)
           RETURNING *, (SELECT name FROM projects WHERE id = project_id) AS project_name""",
        [
            "key_" + secrets.token_hex(12),
            project_id,
            name,
            hash_key(secret),
            secret[:_DISPLAY_CHARS],
            is_admin,
        ],
    )
    row = await cur.fetchone()
    assert row is not None
    return typed(ApiKey, row), secret


_KEYS_SELECT = (
    "SELECT k.*, p.name AS project_name FROM api_keys k JOIN projects p ON p.id = k.project_id"
)


async def list_keys(
    conn: AsyncConnection[Any], *, project_id: str | None, page: PageRequest
) -> Page[ApiKey]:
    where, params = ("k.project_id = %s", [project_id]) if project_id else ("true", [])
    result = await fetch_page(
        conn,
        select=_KEYS_SELECT,
        where=where,
        params=params,
        key_created="k.created_at",
        key_id="k.id",
        cursor_lookup="SELECT created_at FROM api_keys WHERE id = %s",
        cursor_params=[],
        page=page,
    )
    return result.map(lambda row: typed(ApiKey, row))


async def get_key(conn: AsyncConnection[Any], *, key_id: str) -> ApiKey | None:
    cur = await conn.execute(f"{_KEYS_SELECT} WHERE k.id = %s", [key_id])
    row = await cur.fetchone()
    return typed(ApiKey, row) if row else None


async def revoke_key(conn: AsyncConnection[Any], *, key_id: str) -> ApiKey | None:
    """Revoke a key (idempotent: revoking twice keeps the first time); None if unknown."""
    await conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp()) WHERE id = %s",
        [key_id],
    )
    return await get_key(conn, key_id=key_id)


async def lookup_active_key(conn: AsyncConnection[Any], *, key_hash: str) -> ActiveKey | None:
    cur = await conn.execute(
        """SELECT id, project_id, is_admin, key_hash,
                  last_used_at IS NULL
                  OR last_used_at < clock_timestamp() - make_interval(secs => %s) AS stale
           FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL""",
        [_TOUCH_EVERY_S, key_hash],
    )
    row = await cur.fetchone()
    return typed(ActiveKey, row) if row else None


async def is_key_active(conn: AsyncConnection[Any], *, key_id: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM api_keys WHERE id = %s AND revoked_at IS NULL", [key_id]
    )
    return await cur.fetchone() is not None


async def touch_key(conn: AsyncConnection[Any], *, key_id: str) -> None:
    await conn.execute(
        "UPDATE api_keys SET last_used_at = clock_timestamp() WHERE id = %s", [key_id]
    )


async def count_active_keys(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL")
    row = await cur.fetchone()
    return int(row["n"]) if row else 0
