"""Queries on vector stores' file batches; their file counts are read live, like a store's."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from prepshelf.domain.vector_stores import FileBatch
from prepshelf.store.pages import Page, PageRequest, fetch_page
from prepshelf.store.rows import typed
from prepshelf.store.vector_stores import FILE_COUNTS, file_counts


def _file_batch(row: Any) -> FileBatch:
    return typed(FileBatch, row, file_counts=file_counts(row))


async def in_progress_job_ids_of_file_batch(
    conn: AsyncConnection[Any], *, file_batch_id: str
) -> list[str]:
    """Jobs of the batch's files still in progress."""
    rows = await (
        await conn.execute(
            """SELECT job_id FROM vector_store_files
           WHERE file_batch_id = %s AND status = 'in_progress' AND job_id IS NOT NULL""",
            [file_batch_id],
        )
    ).fetchall()
    return [r["job_id"] for r in rows]


async def create_file_batch(
    conn: AsyncConnection[Any], *, file_batch_id: str, store_id: str
) -> None:
    await conn.execute(
        "INSERT INTO file_batches (id, vector_store_id) VALUES (%s, %s)", [file_batch_id, store_id]
    )


async def get_file_batch(
    conn: AsyncConnection[Any], *, store_id: str, file_batch_id: str
) -> FileBatch | None:
    cur = await conn.execute(
        f"""SELECT b.*, c.* FROM file_batches b
            CROSS JOIN LATERAL (SELECT {FILE_COUNTS} FROM vector_store_files
                                WHERE file_batch_id = b.id) c
            WHERE b.id = %s AND b.vector_store_id = %s""",
        [file_batch_id, store_id],
    )
    row = await cur.fetchone()
    return _file_batch(row) if row else None


async def mark_file_batch_cancel_requested(
    conn: AsyncConnection[Any], *, file_batch_id: str
) -> None:
    await conn.execute(
        "UPDATE file_batches SET cancel_requested_at = coalesce(cancel_requested_at, "
        "clock_timestamp()) WHERE id = %s",
        [file_batch_id],
    )


async def list_file_batches(
    conn: AsyncConnection[Any], *, store_id: str, page: PageRequest
) -> Page[FileBatch]:
    """A store's batches with their file counts (beyond OpenAI: the dashboard lists them)."""
    result = await fetch_page(
        conn,
        select=f"""SELECT b.*, c.* FROM file_batches b
                   CROSS JOIN LATERAL (SELECT {FILE_COUNTS} FROM vector_store_files
                                       WHERE file_batch_id = b.id) c""",
        where="b.vector_store_id = %s",
        params=[store_id],
        key_created="b.created_at",
        key_id="b.id",
        cursor_lookup="SELECT created_at FROM file_batches WHERE vector_store_id = %s AND id = %s",
        cursor_params=[store_id],
        page=page,
    )
    return result.map(_file_batch)
