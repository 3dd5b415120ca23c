"""Fair share between batches: a batch holds its worker for one turn while others wait.

A worker runs one batch at a time. Between slices, a batch that has run for `batch_turn_s`
looks whether another batch job is due and waiting; if so it hands its job back (its slices
done so far stay done) at one lower queue priority, so every batch that waited gets a turn
before it comes back. New batches join the line behind their own project's unfinished
batches only (`defer_priority`), so one project's small batch starts within a turn of
another project's huge one, and a project's own small batch waits at most one turn.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg import AsyncConnection

from prepshelf.domain.batches import BatchJob
from prepshelf.jobs.queue import BATCH_QUEUE
from prepshelf.jobs.resources import WorkerResources
from prepshelf.jobs.retry import RequeueJob
from prepshelf.store import batch_jobs as batch_jobs_db
from prepshelf.store import queue_turns

BATCH_KIND = "embed_batch"  # jobs.kind of every /v1/batches job, whatever its endpoint


async def defer_priority(conn: AsyncConnection[Any], *, project_id: str, job_id: str) -> int:
    """The queue priority of a new batch job: behind the project's own unfinished ones."""
    ahead = await queue_turns.unfinished_jobs(
        conn, project_id=project_id, kind=BATCH_KIND, excluding=[job_id]
    )
    return -ahead


async def yield_if_others_wait(res: WorkerResources, job: BatchJob, *, since: float) -> None:
    """After a full turn, hand the job back when another batch is waiting for a worker."""
    if time.monotonic() - since < res.settings.batch_turn_s:
        return
    async with res.pool.connection() as conn:
        if not await queue_turns.others_waiting(conn, queue=BATCH_QUEUE):
            return
        await batch_jobs_db.release(conn, job=job, reason="turn over: other batches waiting")
    raise RequeueJob("turn over: other batches waiting", yield_turn=True)
