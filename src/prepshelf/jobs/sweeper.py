"""Finds work abandoned by dead workers and puts it back on the shelf, or ends it.

procrastinate never re-queues a job whose worker died (SIGKILL, OOM, lost host); this sweep
does, as a periodic task on every worker (the queue runs each tick once). A file that killed
its worker `max_attempts` times fails with that reason instead of looping.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import procrastinate
from procrastinate.jobs import Status

from prepshelf.domain.job_errors import job_error_message
from prepshelf.jobs.queue import BATCH_QUEUE, INGEST_QUEUES
from prepshelf.jobs.runs import RUNS_QUEUE
from prepshelf.settings import Settings
from prepshelf.store import batches as batches_db
from prepshelf.store import jobs as jobs_db
from prepshelf.store import queue_turns, swept_jobs
from prepshelf.store.db import Pool
from prepshelf.store.swept_jobs import SweptJob

log = logging.getLogger(__name__)


async def sweep(app: procrastinate.App, pool: Pool, settings: Settings) -> dict[str, int]:
    """One pass; returns counts of what it did (for logs and tests)."""
    requeued = failed = orphans = 0
    stalled = [
        qjob
        for queue in (*INGEST_QUEUES, BATCH_QUEUE, RUNS_QUEUE)
        for qjob in await app.job_manager.get_stalled_jobs(
            queue=queue, seconds_since_heartbeat=settings.stall_timeout_s
        )
    ]
    for qjob in stalled:
        job_id = cast(str | None, qjob.task_kwargs.get("job_id"))  # deferred as job_id=str
        async with pool.connection() as conn:
            job = await swept_jobs.get_swept_job(conn, job_id=job_id)
            if job is None or job.status not in ("queued", "running"):
                await app.job_manager.finish_job(qjob, status=Status.FAILED, delete_job=False)
                continue
            if job.attempts >= settings.max_attempts:
                await jobs_db.finish_failed(conn, job=job, error=_died_error(job))
                await batches_db.fail_batch_of_job(
                    conn, job_id=job.id, message=_died_error(job)["message"]
                )
                await app.job_manager.finish_job(qjob, status=Status.FAILED, delete_job=False)
                failed += 1
            else:
                await jobs_db.release_job(
                    conn, job=job, reason="released: worker lost (no heartbeat)"
                )
                await app.job_manager.retry_job(qjob)
                requeued += 1
    async with pool.connection() as conn:
        for job in await swept_jobs.orphaned_jobs(conn):
            await jobs_db.finish_failed(
                conn,
                job=job,
                error={
                    "code": "server_error",
                    "message": job_error_message(
                        str(job.filename or job.file_id),
                        job.stage or "queued",
                        f"processing ended unexpectedly (queue message {job.queue_status})",
                    ),
                    "stage": job.stage,
                    "file_id": job.file_id,
                },
            )
            await batches_db.fail_batch_of_job(
                conn, job_id=job.id, message="processing ended unexpectedly"
            )
            orphans += 1
    async with pool.connection() as conn:
        await jobs_db.settle_waiting_archives(conn)  # safety net; members settle them
        # Fair share: a project's waiting ingest jobs keep their order, renumbered from 0.
        for queue in INGEST_QUEUES:
            await queue_turns.rerank_waiting(conn, queue=queue)
    if requeued or failed or orphans:
        log.warning("sweeper: requeued %d, failed %d, orphans %d", requeued, failed, orphans)
    return {"requeued": requeued, "failed": failed, "orphans": orphans}


def _died_error(job: SweptJob) -> dict[str, Any]:
    stage = job.stage or "starting"
    return {
        "code": "server_error",
        "message": job_error_message(
            job.filename or job.file_id or job.kind,
            stage,
            f"the worker processing it stopped {job.attempts} times (killed, out of memory "
            "or crashed); giving up",
        ),
        "stage": stage,
        "file_id": job.file_id,
    }
