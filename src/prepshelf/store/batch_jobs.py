"""The job row behind a batch, typed for its worker. The transitions themselves (claim, fail,
cancel, release, succeed) are store/jobs.py's, so every job kind ends the same way."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from prepshelf.domain.batches import BatchJob
from prepshelf.store import job_readouts
from prepshelf.store import jobs as jobs_db

Conn = AsyncConnection[Any]


def _batch_job(row: dict[str, Any]) -> BatchJob:
    return BatchJob(
        id=row["id"], status=row["status"], attempts=row["attempts"], worker=row["worker"]
    )


async def get(conn: Conn, *, job_id: str) -> BatchJob | None:
    job = await job_readouts.get_job(conn, job_id=job_id)
    if job is None:
        return None
    return BatchJob(id=job.id, status=job.status, attempts=job.attempts, worker=job.worker)


async def claim(conn: Conn, *, job_id: str, worker: str) -> BatchJob | None:
    """Mark the job running on this worker; None when it is final or cancel was requested."""
    row = await jobs_db.claim_job(conn, job_id=job_id, worker=worker)
    return _batch_job(row) if row else None


async def release(
    conn: Conn, *, job: BatchJob, reason: str, error: dict[str, Any] | None = None
) -> None:
    await jobs_db.release_job(conn, job=job, reason=reason, error=error)


async def finish_succeeded(conn: Conn, *, job: BatchJob) -> None:
    await jobs_db.finish_succeeded(conn, job=job, usage_bytes=0)


async def finish_failed(conn: Conn, *, job: BatchJob, error: dict[str, Any]) -> None:
    await jobs_db.finish_failed(conn, job=job, error=error)
