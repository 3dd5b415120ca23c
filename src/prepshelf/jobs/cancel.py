"""Cancellation: queued jobs end at once; running ones stop at their next batch boundary."""

from __future__ import annotations

from typing import Any

import procrastinate
from psycopg import AsyncConnection

from prepshelf.jobs.queue import cancel_queued
from prepshelf.store import jobs as jobs_db


async def cancel_jobs(
    app: procrastinate.App, conn: AsyncConnection[Any], job_ids: list[str]
) -> None:
    async with conn.transaction():
        queue_ids = await jobs_db.request_cancel(conn, job_ids=job_ids)
    await cancel_queued(app, queue_ids)


async def cancel_jobs_of_file(
    app: procrastinate.App,
    conn: AsyncConnection[Any],
    *,
    file_id: str,
    store_id: str | None = None,
) -> None:
    query = "SELECT id FROM jobs WHERE file_id = %s AND status IN ('queued', 'running')"
    args: list[Any] = [file_id]
    if store_id is not None:
        query += " AND vector_store_id = %s"
        args.append(store_id)
    rows = await (await conn.execute(query, args)).fetchall()
    await cancel_jobs(app, conn, [r["id"] for r in rows])


async def cancel_jobs_of_store(
    app: procrastinate.App, conn: AsyncConnection[Any], *, store_id: str
) -> None:
    rows = await (
        await conn.execute(
            "SELECT id FROM jobs WHERE vector_store_id = %s AND status IN ('queued', 'running')",
            [store_id],
        )
    ).fetchall()
    await cancel_jobs(app, conn, [r["id"] for r in rows])


async def cancel_batch_jobs(
    app: procrastinate.App, conn: AsyncConnection[Any], *, batch_id: str
) -> None:
    rows = await (
        await conn.execute(
            """SELECT job_id FROM vector_store_files
           WHERE batch_id = %s AND status = 'in_progress' AND job_id IS NOT NULL""",
            [batch_id],
        )
    ).fetchall()
    await cancel_jobs(app, conn, [r["job_id"] for r in rows])
