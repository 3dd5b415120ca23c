"""A batch's status changes and the job transitions that go with them.

Each change is guarded by the statuses it may come from (store/batches.py's `set_status`),
so a worker that replays a step after a crash, or races a cancel, changes nothing twice.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import AsyncConnection

from prepshelf.domain.batches import Batch, BatchJob, SlicePlan, StopReason
from prepshelf.domain.job_errors import gave_up
from prepshelf.ids import new_file_id
from prepshelf.jobs.batch_checks import ValidationReport
from prepshelf.jobs.batch_output import STOP_ERRORS, output_key
from prepshelf.jobs.failures import retry_if_transient
from prepshelf.jobs.resources import WorkerResources
from prepshelf.store import batch_jobs as batch_jobs_db
from prepshelf.store import batch_slices as slices_db
from prepshelf.store import batches as batches_db
from prepshelf.store import files as files_db
from prepshelf.store import job_progress
from prepshelf.store import jobs as jobs_db

log = logging.getLogger(__name__)

_RUNNING = ("validating", "in_progress", "finalizing", "cancelling")


class Stop(Exception):
    """The batch is to end before its remaining slices run."""

    def __init__(self, status: StopReason) -> None:
        super().__init__(status)
        self.status: StopReason = status


async def check_stop(conn: AsyncConnection[Any], *, batch_id: str, job_id: str) -> None:
    """Raise Stop when the batch was cancelled or its completion window ended."""
    state = await batches_db.stop_state(conn, batch_id=batch_id, job_id=job_id)
    if state is None or state.status == "cancelling" or state.cancel_requested:
        raise Stop("cancelled")
    if state.expired:
        raise Stop("expired")


async def fail_invalid(
    conn: AsyncConnection[Any], *, batch_id: str, job: BatchJob, report: ValidationReport
) -> None:
    """The input is malformed: fail the batch with its line errors, and its job."""
    await batches_db.set_status(
        conn,
        batch_id=batch_id,
        status="failed",
        only_from=("validating", "cancelling"),
        errors=report.errors,
        total=0,
    )
    await batch_jobs_db.finish_failed(conn, job=job, error=report.job_error(batch_id))


async def start_embedding(
    conn: AsyncConnection[Any],
    *,
    batch_id: str,
    job: BatchJob,
    slices: list[SlicePlan],
    total: int,
) -> None:
    """The input is valid: checkpoint its slices and move the batch on to embedding."""
    await slices_db.insert_slices(conn, batch_id=batch_id, slices=slices)
    await batches_db.set_status(
        conn, batch_id=batch_id, status="in_progress", only_from=("validating",), total=total
    )
    # Also when the batch is already cancelling (set_status left it): its counts show total.
    await batches_db.set_total(conn, batch_id=batch_id, total=total)
    await job_progress.set_stage(
        conn, job_id=job.id, stage="embedding", progress_total=total, progress_unit="lines"
    )


async def fail(res: WorkerResources, job: BatchJob, batch: Batch, exc: Exception) -> None:
    """A fault in the task: retry a transient one later (progress kept), else fail the batch."""
    transient = isinstance(exc, psycopg.OperationalError)
    message = f"{type(exc).__name__}: {exc}"

    async def release() -> None:
        log.warning("batch %s: transient fault, retrying: %s", batch.id, exc)
        async with res.pool.connection() as conn:
            await batch_jobs_db.release(
                conn,
                job=job,
                reason="retry scheduled",
                error={"code": "server_error", "message": message},
            )

    await retry_if_transient(
        res.settings, attempts=job.attempts, transient=transient, message=message, release=release
    )
    log.exception("batch %s failed", batch.id)
    reason = gave_up(message, job.attempts) if transient else message
    error = {"code": "server_error", "message": f"batch {batch.id}: {reason}"}
    async with res.pool.connection() as conn, conn.transaction():
        await batches_db.set_status(
            conn,
            batch_id=batch.id,
            status="failed",
            only_from=_RUNNING,
            errors=[{**error, "param": None, "line": None}],
        )
        await batch_jobs_db.finish_failed(conn, job=job, error=error)


async def finish(
    conn: AsyncConnection[Any],
    *,
    batch: Batch,
    job: BatchJob,
    final: str,
    written: dict[str, tuple[int, str] | None],
) -> None:
    """Register the written files (`written`: name → size and sha, None when empty) and end
    the batch with `final` and its job to match. Runs in the caller's transaction."""
    batch_id = batch.id
    file_ids: dict[str, str | None] = {}
    for name, info in written.items():
        if info is None:
            file_ids[name] = None
            continue
        new_id = file_ids[name] = new_file_id()
        await files_db.insert_file(
            conn,
            file_id=new_id,
            project_id=batch.project_id,
            filename=f"{batch_id}_{'output' if name == 'output' else 'error'}.jsonl",
            purpose="batch_output",
            size=info[0],
            sha256=info[1],
            blob_key=output_key(batch_id, name),
        )
    await batches_db.set_status(
        conn,
        batch_id=batch_id,
        status=final,
        only_from=_RUNNING,
        output_file_id=file_ids["output"],
        error_file_id=file_ids["errors"],
    )
    if final == "completed":
        await batch_jobs_db.finish_succeeded(conn, job=job)
    elif final == "cancelled":
        await jobs_db.finish_cancelled(conn, job_id=job.id)
    else:
        code, message = STOP_ERRORS[final]
        await batch_jobs_db.finish_failed(
            conn, job=job, error={"code": code, "message": f"batch {batch_id}: {message}"}
        )
