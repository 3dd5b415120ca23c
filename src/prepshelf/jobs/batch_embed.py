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
import functools
from dataclasses import replace
from typing import Any

import procrastinate
from psycopg import AsyncConnection

from prepshelf.domain.batches import Batch, BatchJob
from prepshelf.jobs import batch_state
from prepshelf.jobs.batch_input import drop_cached_input, input_path
from prepshelf.jobs.batch_lines import ENDPOINT as ENDPOINT  # the API checks them on create
from prepshelf.jobs.batch_lines import UPSTREAM_ENDPOINTS as UPSTREAM_ENDPOINTS
from prepshelf.jobs.batch_lines import read_slice
from prepshelf.jobs.batch_output import STOP_ERRORS, concat, delete_parts
from prepshelf.jobs.batch_slices import embed_slices
from prepshelf.jobs.batch_turns import defer_priority
from prepshelf.jobs.batch_upstream import UpstreamPaused
from prepshelf.jobs.batch_upstream_slices import answer_slices
from prepshelf.jobs.batch_validate import validate
from prepshelf.jobs.queue import BATCH_QUEUE, BATCH_TASK
from prepshelf.jobs.resources import WorkerResources
from prepshelf.jobs.retry import RequeueJob, RequeueStrategy
from prepshelf.store import batch_answers, job_progress
from prepshelf.store import batch_jobs as batch_jobs_db
from prepshelf.store import batch_slices as slices_db
from prepshelf.store import batches as batches_db
from prepshelf.store import jobs as jobs_db


async def defer_batch_job(
    app: procrastinate.App, conn: AsyncConnection[Any], job_id: str, *, project_id: str
) -> int:
    """Queue the batch's job on `conn` (the caller's transaction); return the queue job id.
    It waits behind its own project's unfinished batches only (batch_turns)."""
    priority = await defer_priority(conn, project_id=project_id, job_id=job_id)
    deferrer = app.configure_task(BATCH_TASK, queue=BATCH_QUEUE, connection=conn, priority=priority)
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
    except RequeueJob:
        raise  # released already: a turn given to waiting batches
    except UpstreamPaused as paused:
        async with res.pool.connection() as conn:
            await batch_jobs_db.release(conn, job=job, reason=f"waiting for the upstream: {paused}")
        raise RequeueJob(str(paused), paused.retry_after_s) from None
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
            await job_progress.set_stage(conn, job_id=job.id, stage="embedding")
    try:
        if batch.status != "finalizing":
            if await _is_upstream(res, batch):
                await answer_slices(res, job, batch)
            else:
                await embed_slices(res, job, batch)
        final = "completed"
    except batch_state.Stop as stop:
        final = stop.status
    await _finalize(res, batch, job, final)


async def _is_upstream(res: WorkerResources, batch: Batch) -> bool:
    """Chat and completions always go upstream; embeddings when the first line names a model
    an upstream serves rather than the worker's own (a batch asks one model, as OpenAI's)."""
    if batch.endpoint != ENDPOINT:
        return True
    if res.upstreams is None or not res.upstreams.config.models_for("/v1/embeddings"):
        return False
    async with res.pool.connection() as conn:
        slices = await slices_db.slices(conn, batch_id=batch.id)
    if not slices:
        return False
    path = await input_path(res, batch)
    first = await asyncio.to_thread(
        read_slice, path, replace(slices[0], n_lines=1), max_bytes=res.settings.max_json_body_bytes
    )
    model = first[0].body.get("model") if first and isinstance(first[0].body, dict) else None
    local = {res.embedder.model_id, res.settings.model_id}
    return (
        isinstance(model, str)
        and model not in local
        and any(m.id == model for m in res.upstreams.config.models_for("/v1/embeddings"))
    )


async def _finalize(res: WorkerResources, batch: Batch, job: BatchJob, final: str) -> None:
    """Write the output files and end the batch and its job (idempotent: keys are fixed)."""
    async with res.pool.connection() as conn:
        if final == "completed":
            await batches_db.set_status(
                conn, batch_id=batch.id, status="finalizing", only_from=("in_progress",)
            )
        await job_progress.set_stage(conn, job_id=job.id, stage="indexing")
        slices = await slices_db.slices(conn, batch_id=batch.id)
        # An upstream batch stopped mid-slice keeps the answers that slice already got.
        partial = {
            sl.slice_no: answers
            for sl in slices
            if not sl.done
            and (
                answers := await batch_answers.slice_lines(
                    conn, batch_id=batch.id, slice_no=sl.slice_no
                )
            )
        }
    path = await input_path(res, batch) if final in STOP_ERRORS else None
    written = await asyncio.to_thread(
        functools.partial(
            concat,
            res.blobs,
            batch.id,
            slices,
            path,
            final,
            res.settings.max_json_body_bytes,
            endpoint=batch.endpoint,
            partial=partial,
        )
    )
    drop_cached_input(res, batch.id)
    async with res.pool.connection() as conn, conn.transaction():
        await batch_state.finish(conn, batch=batch, job=job, final=final, written=written)
    delete_parts(res.blobs, batch.id, slices)


def register(app: procrastinate.App, res: WorkerResources) -> None:
    @app.task(name=BATCH_TASK, queue=BATCH_QUEUE, retry=RequeueStrategy())
    async def embed_batch(job_id: str) -> None:
        await run_batch(res, job_id)
