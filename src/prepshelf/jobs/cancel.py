"""Cancellation: queued jobs end at once; running ones stop at their next batch boundary."""

from __future__ import annotations

from typing import Any

import procrastinate
from psycopg import AsyncConnection

from prepshelf.jobs.queue import cancel_queued
from prepshelf.store import file_batches as file_batches_db
from prepshelf.store import job_cancels


async def cancel_jobs(
    app: procrastinate.App, conn: AsyncConnection[Any], job_ids: list[str]
) -> None:
    async with conn.transaction():
        queue_ids = await job_cancels.request_cancel(conn, job_ids=job_ids)
    await cancel_queued(app, queue_ids)


async def cancel_jobs_of_file(
    app: procrastinate.App,
    conn: AsyncConnection[Any],
    *,
    file_id: str,
    store_id: str | None = None,
) -> None:
    job_ids = await job_cancels.active_job_ids_of_file(conn, file_id=file_id, store_id=store_id)
    await cancel_jobs(app, conn, job_ids)


async def cancel_jobs_of_store(
    app: procrastinate.App, conn: AsyncConnection[Any], *, store_id: str
) -> None:
    await cancel_jobs(app, conn, await job_cancels.active_job_ids_of_store(conn, store_id=store_id))


async def cancel_batch_jobs(
    app: procrastinate.App, conn: AsyncConnection[Any], *, batch_id: str
) -> None:
    job_ids = await file_batches_db.in_progress_job_ids_of_file_batch(conn, file_batch_id=batch_id)
    await cancel_jobs(app, conn, job_ids)
