"""The /v1/batches embedding task: validate the JSONL input, embed it slice by slice, finalize.

Checkpoints: validation cuts the input into slices (file offset + line count) in one
transaction (batch_validate); each slice's output is written to its own part blob (replaced
whole if the slice runs again) and marked done together with the batch counts and the job's
progress (batch_slices). A worker that dies mid-slice costs that slice only, and no
`custom_id` is ever written twice. Finalize concatenates the part blobs into the output and
error files (batch_output). Memory is bounded by one slice: the input is read and the output
written as streams. Status changes are batch_state's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import procrastinate
from psycopg import AsyncConnection

from prepshelf.domain.batches import Batch, BatchJob
from prepshelf.jobs import batch_state
from prepshelf.jobs.batch_input import drop_cached_input, input_path
from prepshelf.jobs.batch_lines import ENDPOINT as ENDPOINT  # the API checks it on create
from prepshelf.jobs.batch_output import STOP_ERRORS, concat, delete_parts
from prepshelf.jobs.batch_slices import embed_slices
from prepshelf.jobs.batch_validate import validate
from prepshelf.jobs.ingest import WorkerResources
from prepshelf.jobs.queue import BATCH_QUEUE, BATCH_TASK
from prepshelf.jobs.retry import RequeueJob, RequeueStrategy
from prepshelf.store import batch_jobs as batch_jobs_db
from prepshelf.store import batch_slices as slices_db
from prepshelf.store import batches as batches_db
from prepshelf.store import jobs as jobs_db


async def defer_batch_job(app: procrastinate.App, conn: AsyncConnection[Any], job_id: str) -> int:
    """Queue the batch's job on `conn` (the caller's transaction); return the queue job id."""
    deferrer = app.configure_task(BATCH_TASK, queue=BATCH_QUEUE, connection=conn)
    return await deferrer.defer_async(job_id=job_id)


async def run_batch(res: WorkerResources, job_id: str) -> None:
    async with res.pool.connection() as conn:
        batch = await batches_db.get_batch_of_job(conn, job_id=job_id)
        job = await batch_jobs_db.claim(conn, job_id=job_id, worker=res.worker_name)
    if batch is None:
        async with res.pool.connection() as conn:
            await jobs_db.finish_cancelled(conn, job_id=job_id)
        return
    if job is None:  # final already, or cancel requested before this attempt started
        async with res.pool.connection() as conn:
            current = await batch_jobs_db.get(conn, job_id=job_id)
        assert current is not None
        if current.status in ("queued", "running") or batch.status == "cancelling":
            await _finalize(res, batch, current, "cancelled")
        return
    try:
        await _run(res, job, batch)
    except asyncio.CancelledError:
        async with res.pool.connection() as conn:
            await batch_jobs_db.release(conn, job=job, reason="released: worker shutting down")
        raise RequeueJob("worker shutting down") from None
    except Exception as exc:
        await batch_state.fail(res, job, batch, exc)


async def _run(res: WorkerResources, job: BatchJob, batch: Batch) -> None:
    if batch.status == "validating":
        if not await validate(res, job, batch):
            return
    elif batch.status in ("in_progress", "cancelling"):
        async with res.pool.connection() as conn:
            await jobs_db.set_stage(conn, job_id=job.id, stage="embedding")
    try:
        if batch.status != "finalizing":
            await embed_slices(res, job, batch)
        final = "completed"
    except batch_state.Stop as stop:
        final = stop.status
    await _finalize(res, batch, job, final)


async def _finalize(res: WorkerResources, batch: Batch, job: BatchJob, final: str) -> None:
    """Write the output files and end the batch and its job (idempotent: keys are fixed)."""
    async with res.pool.connection() as conn:
        if final == "completed":
            await batches_db.set_status(
                conn, batch_id=batch.id, status="finalizing", only_from=("in_progress",)
            )
        await jobs_db.set_stage(conn, job_id=job.id, stage="indexing")
        slices = await slices_db.slices(conn, batch_id=batch.id)
    path = await input_path(res, batch) if final in STOP_ERRORS else None
    written = await asyncio.to_thread(
        concat, res.blobs, batch.id, slices, path, final, res.settings.max_json_body_bytes
    )
    drop_cached_input(res, batch.id)
    async with res.pool.connection() as conn, conn.transaction():
        await batch_state.finish(conn, batch=batch, job=job, final=final, written=written)
    delete_parts(res.blobs, batch.id, slices)


def register(app: procrastinate.App, res: WorkerResources) -> None:
    @app.task(name=BATCH_TASK, queue=BATCH_QUEUE, retry=RequeueStrategy())
    async def embed_batch(job_id: str) -> None:
        await run_batch(res, job_id)
