"""An upstream batch slice by slice: lines answered by batch_upstream, then the slice's part
blobs written from the kept answers and marked done with the batch counts in one transaction.

Between slices the batch checks for cancel and expiry, and gives its worker to a waiting
batch once it has held it for `batch_turn_s` (fair share, batch_turns.py). The job's progress
moves with each answer, not only with each slice, so a slow upstream is visibly working.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import cast

from prepshelf.domain.batches import Batch, BatchJob, BatchSlice
from prepshelf.domain.upstreams import Endpoint
from prepshelf.jobs.batch_input import input_path
from prepshelf.jobs.batch_lines import read_slice
from prepshelf.jobs.batch_output import write_answer_parts
from prepshelf.jobs.batch_state import check_stop
from prepshelf.jobs.batch_turns import yield_if_others_wait
from prepshelf.jobs.batch_upstream import UpstreamLine, answer_slice
from prepshelf.jobs.resources import WorkerResources
from prepshelf.store import batch_answers, job_progress
from prepshelf.store import batch_slices as slices_db
from prepshelf.store.batch_answers import LineAnswer

_PROGRESS_EVERY_S = 1.0


async def answer_slices(res: WorkerResources, job: BatchJob, batch: Batch) -> None:
    """Run every slice not done yet, in order; raises batch_state.Stop between slices,
    UpstreamPaused when an upstream must be waited for, BatchTurnOver when others wait."""
    if res.upstreams is None:
        raise RuntimeError("this worker has no upstream clients")
    path = await input_path(res, batch)
    started = time.monotonic()
    while True:
        async with res.pool.connection() as conn:
            await check_stop(conn, batch_id=batch.id, job_id=job.id)
            sl = await slices_db.next_slice(conn, batch_id=batch.id)
        if sl is None:
            return
        await _slice_step(res, job, batch, path, sl)
        await yield_if_others_wait(res, job, since=started)


async def _slice_step(
    res: WorkerResources, job: BatchJob, batch: Batch, path: Path, sl: BatchSlice
) -> None:
    assert res.upstreams is not None
    lines = await asyncio.to_thread(
        read_slice,
        path,
        sl,
        max_bytes=res.settings.max_json_body_bytes,
        endpoint=batch.endpoint,
    )
    async with res.pool.connection() as conn:
        before = await slices_db.lines_done(conn, batch_id=batch.id)
    progress = _Progress(res, job.id, before)
    answers = await answer_slice(
        pool=res.pool,
        clients=res.upstreams,
        batch_id=batch.id,
        slice_no=sl.slice_no,
        endpoint=cast(Endpoint, batch.endpoint),
        lines=[
            UpstreamLine(ln.line_no, ln.custom_id or "", ln.body)
            for ln in lines
            if ln.body is not None
        ],
        concurrency=res.settings.upstream_batch_concurrency,
        max_wait_s=res.settings.upstream_max_wait_s,
        on_answer=progress.tick,
    )
    await asyncio.to_thread(write_answer_parts, res.blobs, batch.id, sl.slice_no, answers)
    async with res.pool.connection() as conn, conn.transaction():
        done = await slices_db.finish_slice(
            conn,
            batch_id=batch.id,
            slice_no=sl.slice_no,
            completed=sum(1 for a in answers if not a.is_error),
            failed=sum(1 for a in answers if a.is_error),
            tokens=sum(a.input_tokens for a in answers),
            output_tokens=sum(a.output_tokens for a in answers),
        )
        await batch_answers.forget_slice(conn, batch_id=batch.id, slice_no=sl.slice_no)
        await job_progress.set_progress(conn, job_id=job.id, done=done)


class _Progress:
    """Moves the job's progress (lines) as answers arrive, at most once a second."""

    def __init__(self, res: WorkerResources, job_id: str, before: int) -> None:
        self._res, self._job_id, self._before = res, job_id, before
        self._answered = 0
        self._last = 0.0

    async def tick(self, answer: LineAnswer) -> None:
        self._answered += 1
        now = time.monotonic()
        if now - self._last < _PROGRESS_EVERY_S:
            return
        self._last = now
        async with self._res.pool.connection() as conn:
            await job_progress.set_progress(
                conn, job_id=self._job_id, done=self._before + self._answered
            )
