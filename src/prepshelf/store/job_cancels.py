"""Cancellation in the jobs table: which jobs are still active, and the cancel request."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from prepshelf.store import archives as archives_db
from prepshelf.store.jobs import finish_cancelled


async def active_job_ids_of_file(
    conn: AsyncConnection[Any], *, file_id: str, store_id: str | None = None
) -> list[str]:
    """Queued or running jobs of the file (in one store when `store_id` is given)."""
    query = "SELECT id FROM jobs WHERE file_id = %s AND status IN ('queued', 'running')"
    args: list[Any] = [file_id]
    if store_id is not None:
        query += " AND vector_store_id = %s"
        args.append(store_id)
    rows = await (await conn.execute(query, args)).fetchall()
    return [r["id"] for r in rows]


async def active_job_ids_of_store(conn: AsyncConnection[Any], *, store_id: str) -> list[str]:
    rows = await (
        await conn.execute(
            "SELECT id FROM jobs WHERE vector_store_id = %s AND status IN ('queued', 'running')",
            [store_id],
        )
    ).fetchall()
    return [r["id"] for r in rows]


async def request_cancel(conn: AsyncConnection[Any], *, job_ids: list[str]) -> list[int]:
    """Cancel queued jobs at once and flag running ones; return queue ids of the queued ones."""
    if not job_ids:
        return []
    job_ids = await archives_db.with_member_jobs(conn, job_ids=job_ids)  # an archive's members
    # Lock order: members before their archive, as a member's finish does (its own row, then
    # the archive's). One UPDATE locks in scan order and deadlocks with a finishing member.
    await conn.execute(
        """SELECT j.id FROM jobs j LEFT JOIN files f ON f.id = j.file_id
           WHERE j.id = ANY(%s) /* cancel: members first */
           ORDER BY coalesce(f.archive_depth, 0) DESC, j.id FOR UPDATE OF j""",
        [job_ids],
    )
    cur = await conn.execute(
        """UPDATE jobs SET cancel_requested = true WHERE id = ANY(%s)
              AND status IN ('queued', 'running')
           RETURNING id, status, queue_job_id""",
        [job_ids],
    )
    rows = await cur.fetchall()
    queued = [r for r in rows if r["status"] == "queued"]
    for r in queued:
        await finish_cancelled(conn, job_id=r["id"])
    return [r["queue_job_id"] for r in queued if r["queue_job_id"] is not None]
