"""What a source sync finds in its vector store, and how it takes files out.

A sync recognises its own files by the `sync_source` attribute it writes (the source URI);
files attached by anyone else are never touched. `source` holds the file's path in the
source, `sha256` its bytes' digest, `source_version` the cheap change stamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.syncs import SHA256, SOURCE, SOURCE_VERSION, SYNC_SOURCE

Conn = AsyncConnection[Any]


@dataclass(frozen=True)
class SyncedVersion:
    """One of the sync's files in the store: a version of the source file at `path`."""

    file_id: str
    path: str
    sha256: str | None
    stamp: str | None
    status: str
    job_id: str | None
    file_batch_id: str | None
    last_error: dict[str, Any] | None


def _version(row: dict[str, Any]) -> SyncedVersion:
    attrs = row["attributes"] or {}
    return SyncedVersion(
        file_id=row["file_id"],
        path=str(attrs.get(SOURCE, "")),
        sha256=attrs.get(SHA256),
        stamp=attrs.get(SOURCE_VERSION),
        status=row["status"],
        job_id=row["job_id"],
        file_batch_id=row["file_batch_id"],
        last_error=row["last_error"],
    )


async def synced_versions(conn: Conn, *, store_id: str, source_uri: str) -> list[SyncedVersion]:
    cur = await conn.execute(
        """SELECT file_id, attributes, status, job_id, file_batch_id, last_error
           FROM vector_store_files
           WHERE vector_store_id = %s AND attributes ->> %s = %s
           ORDER BY created_at, file_id""",
        [store_id, SYNC_SOURCE, source_uri],
    )
    return [_version(r) for r in await cur.fetchall()]


async def batch_versions(conn: Conn, *, store_id: str, file_batch_id: str) -> list[SyncedVersion]:
    """The files one sync run attached (its file batch), as they stand now."""
    cur = await conn.execute(
        """SELECT file_id, attributes, status, job_id, file_batch_id, last_error
           FROM vector_store_files WHERE vector_store_id = %s AND file_batch_id = %s""",
        [store_id, file_batch_id],
    )
    return [_version(r) for r in await cur.fetchall()]


async def set_stamp(conn: Conn, *, store_id: str, file_id: str, stamp: str) -> None:
    """A file found unchanged by its digest: remember its new stamp, so next time it is
    recognised without being read."""
    await conn.execute(
        """UPDATE vector_store_files SET attributes = attributes || %s
           WHERE vector_store_id = %s AND file_id = %s""",
        [Jsonb({SOURCE_VERSION: stamp}), store_id, file_id],
    )


async def active_jobs_of_files(conn: Conn, *, store_id: str, file_ids: list[str]) -> list[str]:
    cur = await conn.execute(
        """SELECT id FROM jobs WHERE vector_store_id = %s AND file_id = ANY(%s)
              AND status IN ('queued', 'running')""",
        [store_id, file_ids],
    )
    return [r["id"] for r in await cur.fetchall()]


async def detach(conn: Conn, *, project_id: str, store_id: str, file_ids: list[str]) -> int:
    """Take the sync's files out of the store (their chunks go with them, ON DELETE CASCADE).

    The file objects the sync created go too when no other store holds them: a nightly sync
    must not pile up a file per changed version. Their blobs are collected by maintenance
    (orphan blobs). Returns how many store files were removed.
    """
    if not file_ids:
        return 0
    cur = await conn.execute(
        """DELETE FROM vector_store_files
           WHERE vector_store_id = %s AND file_id = ANY(%s) AND attributes ? %s""",
        [store_id, file_ids, SYNC_SOURCE],
    )
    removed = cur.rowcount
    await conn.execute(
        """DELETE FROM files f WHERE f.project_id = %s AND f.id = ANY(%s)
              AND NOT EXISTS (SELECT 1 FROM vector_store_files v WHERE v.file_id = f.id)""",
        [project_id, file_ids],
    )
    return removed
