"""Queries on vector stores and their files (file batches: `store/file_batches.py`).

File counts are computed from `vector_store_files` at read time, never kept as counters, so
they are exact at every moment: the SDK's batch poll loops while `in_progress > 0`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.vector_stores import FileCounts, VectorStore, VectorStoreFile
from prepshelf.store.pages import Page, PageRequest, fetch_page
from prepshelf.store.rows import typed

# A set of vector_store_files rows counted by status, as OpenAI's file_counts.
FILE_COUNTS = """
    count(*) FILTER (WHERE status = 'in_progress') AS in_progress,
    count(*) FILTER (WHERE status = 'completed') AS completed,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    count(*) AS total"""


def file_counts(row: Any) -> FileCounts:
    """The counts a FILE_COUNTS select list put in the row."""
    return typed(FileCounts, row)


def _store(row: Any) -> VectorStore:
    return typed(VectorStore, row, file_counts=file_counts(row))


_STORE_SELECT = f"""
    SELECT vs.*, c.in_progress, c.completed, c.failed, c.cancelled, c.total, c.usage_bytes
    FROM vector_stores vs
    CROSS JOIN LATERAL (
        SELECT {FILE_COUNTS}, coalesce(sum(usage_bytes), 0)::bigint AS usage_bytes
        FROM vector_store_files WHERE vector_store_id = vs.id) c"""


async def create_store(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    project_id: str,
    name: str | None,
    description: str | None,
    metadata: dict[str, str] | None,
    expires_after: dict[str, Any] | None,
    embedding_model: str,
    dimensions: int,
) -> None:
    await conn.execute(
        """INSERT INTO vector_stores (id, project_id, name, description, metadata, expires_after,
                                      expires_at, embedding_model, dimensions)
           VALUES (%s, %s, %s, %s, %s, %s,
                   CASE WHEN %s::int IS NULL THEN NULL
                        ELSE clock_timestamp() + make_interval(days => %s::int) END,
                   %s, %s)""",
        [
            store_id,
            project_id,
            name,
            description,
            Jsonb(metadata or {}),
            Jsonb(expires_after) if expires_after else None,
            expires_after["days"] if expires_after else None,
            expires_after["days"] if expires_after else None,
            embedding_model,
            dimensions,
        ],
    )


async def get_store(
    conn: AsyncConnection[Any], *, project_id: str, store_id: str
) -> VectorStore | None:
    cur = await conn.execute(
        f"{_STORE_SELECT} WHERE vs.id = %s AND vs.project_id = %s", [store_id, project_id]
    )
    row = await cur.fetchone()
    return _store(row) if row else None


async def list_stores(
    conn: AsyncConnection[Any], *, project_id: str, page: PageRequest
) -> Page[VectorStore]:
    result = await fetch_page(
        conn,
        select=_STORE_SELECT,
        where="vs.project_id = %s",
        params=[project_id],
        key_created="vs.created_at",
        key_id="vs.id",
        cursor_lookup="SELECT created_at FROM vector_stores WHERE project_id = %s AND id = %s",
        cursor_params=[project_id],
        page=page,
    )
    return result.map(_store)


async def update_store(
    conn: AsyncConnection[Any],
    *,
    project_id: str,
    store_id: str,
    fields: dict[str, Any],
) -> bool:
    sets, args = [], []
    if "name" in fields:
        sets.append("name = %s")
        args.append(fields["name"])
    if "metadata" in fields:
        sets.append("metadata = %s")
        args.append(Jsonb(fields["metadata"] or {}))
    if "expires_after" in fields:
        exp = fields["expires_after"]
        sets.append("expires_after = %s")
        args.append(Jsonb(exp) if exp else None)
        sets.append(
            "expires_at = CASE WHEN %s::int IS NULL THEN NULL "
            "ELSE last_active_at + make_interval(days => %s::int) END"
        )
        days = exp["days"] if exp else None
        args += [days, days]
    if not sets:
        cur = await conn.execute(
            "SELECT 1 FROM vector_stores WHERE id = %s AND project_id = %s", [store_id, project_id]
        )
        return await cur.fetchone() is not None
    cur = await conn.execute(
        f"UPDATE vector_stores SET {', '.join(sets)} WHERE id = %s AND project_id = %s",
        [*args, store_id, project_id],
    )
    return cur.rowcount == 1


async def delete_store(conn: AsyncConnection[Any], *, project_id: str, store_id: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM vector_stores WHERE id = %s AND project_id = %s", [store_id, project_id]
    )
    return cur.rowcount == 1


async def touch_store(conn: AsyncConnection[Any], store_id: str) -> None:
    await conn.execute(
        """UPDATE vector_stores SET last_active_at = clock_timestamp(),
               expires_at = CASE WHEN expires_after IS NULL THEN NULL
                   ELSE clock_timestamp() + make_interval(days => (expires_after->>'days')::int) END
           WHERE id = %s""",
        [store_id],
    )


async def expire_due_stores(conn: AsyncConnection[Any]) -> list[str]:
    """Mark stores whose expiry passed (sticky `expired_at`); return their ids."""
    cur = await conn.execute(
        """UPDATE vector_stores SET expired_at = clock_timestamp()
           WHERE expires_at <= clock_timestamp() AND expired_at IS NULL
           RETURNING id"""
    )
    return [r["id"] for r in await cur.fetchall()]


# --- files in a store ------------------------------------------------------------------

_VSF_SELECT = """
    SELECT vsf.*, f.filename
    FROM vector_store_files vsf JOIN files f ON f.id = vsf.file_id"""


def _store_file(row: Any) -> VectorStoreFile:
    return typed(VectorStoreFile, row)


async def get_store_file(
    conn: AsyncConnection[Any], *, store_id: str, file_id: str, job_id: str | None = None
) -> VectorStoreFile | None:
    """The file in the store; with `job_id`, only while that job is still the file's latest."""
    query = f"{_VSF_SELECT} WHERE vsf.vector_store_id = %s AND vsf.file_id = %s"
    args = [store_id, file_id]
    if job_id is not None:
        query += " AND vsf.job_id = %s"
        args.append(job_id)
    row = await (await conn.execute(query, args)).fetchone()
    return _store_file(row) if row else None


async def list_store_files(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    file_batch_id: str | None,
    status: str | None,
    page: PageRequest,
) -> Page[VectorStoreFile]:
    where, params = "vsf.vector_store_id = %s", [store_id]
    if file_batch_id:
        where += " AND vsf.file_batch_id = %s"
        params.append(file_batch_id)
    if status:
        where += " AND vsf.status = %s"
        params.append(status)
    result = await fetch_page(
        conn,
        select=_VSF_SELECT,
        where=where,
        params=params,
        key_created="vsf.created_at",
        key_id="vsf.file_id",
        cursor_lookup=(
            "SELECT created_at FROM vector_store_files WHERE vector_store_id = %s AND file_id = %s"
        ),
        cursor_params=[store_id],
        page=page,
    )
    return result.map(_store_file)


async def update_store_file_attributes(
    conn: AsyncConnection[Any], *, store_id: str, file_id: str, attributes: dict[str, Any]
) -> bool:
    cur = await conn.execute(
        "UPDATE vector_store_files SET attributes = %s WHERE vector_store_id = %s AND file_id = %s",
        [Jsonb(attributes), store_id, file_id],
    )
    return cur.rowcount == 1


async def delete_store_file(conn: AsyncConnection[Any], *, store_id: str, file_id: str) -> bool:
    """Remove the file from the store; its chunks leave search in the same statement."""
    cur = await conn.execute(
        "DELETE FROM vector_store_files WHERE vector_store_id = %s AND file_id = %s",
        [store_id, file_id],
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class NewStoreFile:
    """A file entering a store (or entering it again) with the job that ingests it."""

    file_id: str
    job_id: str
    attributes: dict[str, Any]
    chunking_strategy: dict[str, Any]


async def lock_store_file_statuses(
    conn: AsyncConnection[Any], *, store_id: str, file_ids: list[str]
) -> dict[str, str]:
    """Status by file id of those already in the store, locked (FOR UPDATE) until commit."""
    rows = await (
        await conn.execute(
            """SELECT file_id, status FROM vector_store_files
               WHERE vector_store_id = %s AND file_id = ANY(%s) FOR UPDATE""",
            [store_id, file_ids],
        )
    ).fetchall()
    return {r["file_id"]: r["status"] for r in rows}


async def set_store_files_batch(
    conn: AsyncConnection[Any], *, store_id: str, file_ids: list[str], file_batch_id: str
) -> None:
    await conn.execute(
        "UPDATE vector_store_files SET file_batch_id = %s "
        "WHERE vector_store_id = %s AND file_id = ANY(%s)",
        [file_batch_id, store_id, file_ids],
    )


async def start_store_files(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    file_batch_id: str | None,
    files: list[NewStoreFile],
) -> None:
    """Put the files in the store in progress; one already there starts over (no error, no
    usage, the new attributes and chunking strategy)."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO vector_store_files (vector_store_id, file_id, file_batch_id, job_id,
                                               status,
                                               attributes, chunking_strategy)
               VALUES (%s, %s, %s, %s, 'in_progress', %s, %s)
               ON CONFLICT (vector_store_id, file_id) DO UPDATE SET
                   file_batch_id = EXCLUDED.file_batch_id, job_id = EXCLUDED.job_id,
                   status = 'in_progress', last_error = NULL, usage_bytes = 0,
                   attributes = EXCLUDED.attributes,
                   chunking_strategy = EXCLUDED.chunking_strategy""",
            [
                (
                    store_id,
                    f.file_id,
                    file_batch_id,
                    f.job_id,
                    Jsonb(f.attributes),
                    Jsonb(f.chunking_strategy),
                )
                for f in files
            ],
        )


@dataclass(frozen=True)
class StoreFileSettings:
    """What a store file's job was started with, inherited by an archive's members."""

    file_batch_id: str | None
    attributes: dict[str, Any]
    chunking_strategy: dict[str, Any]


async def lock_store_file_settings(
    conn: AsyncConnection[Any], *, store_id: str, file_id: str, job_id: str
) -> StoreFileSettings | None:
    """The store file still served by `job_id`, locked (FOR UPDATE) until commit; None when
    the file left the store or another job serves it now."""
    row = await (
        await conn.execute(
            """SELECT file_batch_id, attributes, chunking_strategy FROM vector_store_files
               WHERE vector_store_id = %s AND file_id = %s AND job_id = %s FOR UPDATE""",
            [store_id, file_id, job_id],
        )
    ).fetchone()
    if row is None:
        return None
    return StoreFileSettings(
        file_batch_id=row["file_batch_id"],
        attributes=row["attributes"],
        chunking_strategy=row["chunking_strategy"],
    )


@dataclass(frozen=True)
class IngestSource:
    """What an ingest job reads about its store file: the file's bytes and the store's model."""

    filename: str
    blob_key: str
    sha256: str
    chunking_strategy: dict[str, Any]
    embedding_model: str
    attributes: dict[str, Any] | None
    metadata: dict[str, Any] | None
    archive_member: bool = True  # expanded from an archive (its finish settles the archive)
    twin_candidate: bool = True  # another completed store file of the project has its bytes


def ingest_source_sql(store_id: str, file_id: str, job_id: str) -> str:
    """The store file a job serves, as an ingest job reads it, keyed by three SQL expressions
    (placeholders or a claimed job's columns); no row once the file left the store or another
    job serves it now. The twin candidate is a cheap superset of the twin lookup
    (store/chunks.py): most files have no twin, and then no copy transaction is begun."""
    return f"""
    SELECT f.filename, f.blob_key, f.sha256, vsf.chunking_strategy, vs.embedding_model,
           vsf.attributes, vs.metadata, f.parent_file_id IS NOT NULL AS archive_member,
           EXISTS (SELECT 1 FROM files same
                   JOIN vector_store_files other ON other.file_id = same.id
                   WHERE same.project_id = f.project_id AND same.sha256 = f.sha256
                     AND other.status = 'completed'
                     AND (other.vector_store_id, other.file_id)
                         <> (vsf.vector_store_id, vsf.file_id)) AS twin_candidate
    FROM vector_store_files vsf
    JOIN files f ON f.id = vsf.file_id
    JOIN vector_stores vs ON vs.id = vsf.vector_store_id
    WHERE vsf.vector_store_id = {store_id} AND vsf.file_id = {file_id} AND vsf.job_id = {job_id}"""


def ingest_source(row: dict[str, Any]) -> IngestSource:
    return typed(IngestSource, row)
