"""Queries on uploaded files."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from prepshelf.domain.files import File
from prepshelf.store.pages import Page, PageRequest, fetch_page
from prepshelf.store.rows import typed


async def insert_file(
    conn: AsyncConnection[Any],
    *,
    file_id: str,
    project_id: str,
    filename: str,
    purpose: str,
    size: int,
    sha256: str,
    blob_key: str,
) -> File:
    cur = await conn.execute(
        """INSERT INTO files (id, project_id, filename, purpose, bytes, sha256, blob_key)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        [file_id, project_id, filename, purpose, size, sha256, blob_key],
    )
    row = await cur.fetchone()
    assert row is not None
    return typed(File, row)


async def get_file(conn: AsyncConnection[Any], *, project_id: str, file_id: str) -> File | None:
    cur = await conn.execute(
        "SELECT * FROM files WHERE id = %s AND project_id = %s", [file_id, project_id]
    )
    row = await cur.fetchone()
    return typed(File, row) if row else None


async def list_files(
    conn: AsyncConnection[Any], *, project_id: str, purpose: str | None, page: PageRequest
) -> Page[File]:
    where, params = "project_id = %s", [project_id]
    if purpose:
        where += " AND purpose = %s"
        params.append(purpose)
    result = await fetch_page(
        conn,
        select="SELECT * FROM files",
        where=where,
        params=params,
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM files WHERE project_id = %s AND id = %s",
        cursor_params=[project_id],
        page=page,
    )
    return result.map(lambda row: typed(File, row))


async def delete_file(conn: AsyncConnection[Any], *, project_id: str, file_id: str) -> File | None:
    """Delete the file; its store memberships and chunks go with it (ON DELETE CASCADE)."""
    cur = await conn.execute(
        "DELETE FROM files WHERE id = %s AND project_id = %s RETURNING *", [file_id, project_id]
    )
    row = await cur.fetchone()
    return typed(File, row) if row else None


async def file_sizes(
    conn: AsyncConnection[Any], *, project_id: str, file_ids: list[str]
) -> dict[str, int]:
    """Size in bytes of each of `file_ids` that is a file of the project."""
    rows = await (
        await conn.execute(
            "SELECT id, bytes FROM files WHERE project_id = %s AND id = ANY(%s)",
            [project_id, file_ids],
        )
    ).fetchall()
    return {r["id"]: int(r["bytes"]) for r in rows}


async def known_blob_keys(conn: AsyncConnection[Any], *, keys: list[str]) -> set[str]:
    """Which of `keys` belong to a `files` row."""
    cur = await conn.execute("SELECT blob_key FROM files WHERE blob_key = ANY(%s)", [keys])
    return {r["blob_key"] for r in await cur.fetchall()}
