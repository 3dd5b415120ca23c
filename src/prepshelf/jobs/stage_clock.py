"""An ingest attempt's stage, timed in the worker and written to its job row lazily.

A one-paragraph file goes through parsing, chunking, embedding and indexing in a few
milliseconds. Writing each change at once cost more than the work itself: a commit, a job
event row, a NOTIFY and a wake-up of every event stream, four times per file. So a stage is
written only once it has lasted `delay_s` (a client watching a long parse or a big file's
embedding sees it as before), or together with the next write the attempt makes anyway: the
chunks, a checkpoint, the finish. Nothing a client has seen is taken back; a client may miss
a stage that came and went within `delay_s`. The row's stage_durations receive every stage's
seconds all the same, measured here (`StageTimes`), so the split stays exact.

Writes that the clock does not make (a failure, a release, a cancel: they close the row's
stage from its stage_started_at) are preceded by `flush()`, which brings the row up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from prepshelf.domain.jobs import StageTimes
from prepshelf.store import job_progress
from prepshelf.store.db import Pool

log = logging.getLogger(__name__)


class StageClock:
    """Enter stages with `enter` (outside any transaction); writes of the caller's that carry
    the unwritten state run inside `writing()` or `finishing()`, entered *before* their
    transaction opens (a flush in flight holds the clock while it updates the job row)."""

    def __init__(self, pool: Pool, job_id: str, stage: str | None, *, delay_s: float) -> None:
        self._pool, self._job_id, self._delay_s = pool, job_id, delay_s
        self.stage = stage  # where the attempt is (the row may not show it yet)
        self._entered = time.monotonic()
        self._closed: dict[str, float] = {}  # seconds of ended stages not yet written
        self._fields: dict[str, Any] = {}  # progress fields that go with the unwritten stage
        self._version = 0  # bumped by every change; a write clears what it carried
        self._written = 0
        self._lock = asyncio.Lock()  # one write of the row's stage at a time
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._finished = False

    @property
    def dirty(self) -> bool:
        return self._version != self._written

    async def enter(self, stage: str, **fields: Any) -> None:
        """Enter `stage` (with progress fields as `jobs_db.set_stage` takes them); written
        after `delay_s` unless a write carries it first (at once when `delay_s` is 0)."""
        self._record(stage, fields)
        if self._delay_s <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._due)

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[StageWrite]:
        """Hold the clock for a write of the caller's that carries the unwritten state (enter
        it before the write's transaction opens); once the block ends without an error, what
        the write took from it counts as written."""
        async with self._lock:
            self._cancel_timer()
            write = StageWrite(self)
            yield write
            if write.taken is not None:
                self._carried(*write.taken)

    @contextlib.asynccontextmanager
    async def finishing(self) -> AsyncIterator[StageTimes]:
        """Hold the clock for the attempt's last write (the finish): every unwritten stage's
        seconds, the current one's closed now. No flush runs after it, even one already due."""
        async with self._lock:
            self._cancel_timer()
            yield self._finishing_times()
            self._finished = True

    async def flush(self) -> None:
        """Write the unwritten state now, if there is any."""
        async with self._lock:
            self._cancel_timer()
            if not self.dirty or self._finished:
                return
            version, times, fields = self._version, self._times(), dict(self._fields)
            async with self._pool.connection() as conn:
                assert times.stage is not None  # dirty: a stage was entered
                await job_progress.set_stage(
                    conn, job_id=self._job_id, stage=times.stage, times=times, **fields
                )
            self._carried(version, times)

    async def settle(self) -> None:
        """Before a write the clock does not make (failure, release, cancel), and at the end:
        flush what is unwritten, best effort (a lost database only loses stage seconds), and
        stop."""
        try:
            await self.flush()
        except (psycopg.Error, OSError) as exc:
            log.warning("job %s: stage times not written: %s", self._job_id, exc)
        async with self._lock:
            self._cancel_timer()
            self._finished = True
        task = self._flush_task
        if task is not None and task is not asyncio.current_task():
            await asyncio.gather(task, return_exceptions=True)

    # --- internals -------------------------------------------------------------------

    def _record(self, stage: str, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.stage is not None:
            self._closed[self.stage] = self._closed.get(self.stage, 0.0) + now - self._entered
        self.stage, self._entered = stage, now
        self._fields.update(fields)
        self._version += 1

    def _times(self) -> StageTimes:
        return StageTimes(
            stage=self.stage,
            started_ago_s=time.monotonic() - self._entered,
            closed=dict(self._closed),
        )

    def _finishing_times(self) -> StageTimes:
        closed = dict(self._closed)
        if self.stage is not None:
            closed[self.stage] = closed.get(self.stage, 0.0) + time.monotonic() - self._entered
        return StageTimes(stage=None, started_ago_s=0.0, closed=closed)

    def _carried(self, version: int, times: StageTimes) -> None:
        for stage, seconds in times.closed.items():
            left = self._closed.get(stage, 0.0) - seconds
            if left > 1e-9:
                self._closed[stage] = left
            else:
                self._closed.pop(stage, None)
        if self._version == version:  # nothing changed meanwhile: all of it is written
            self._written = version
            self._fields.clear()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        self._flush_task = asyncio.ensure_future(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except (psycopg.Error, OSError) as exc:  # the attempt's next write reports a lost DB
            log.warning("job %s: stage not written yet: %s", self._job_id, exc)


class StageWrite:
    """The clock as a caller's write holds it: enter a stage on the way, then take the
    unwritten state (times and progress fields) for the write."""

    def __init__(self, clock: StageClock) -> None:
        self._clock = clock
        self.taken: tuple[int, StageTimes] | None = None

    def enter(self, stage: str, **fields: Any) -> None:
        self._clock._record(stage, fields)

    def take(self) -> tuple[StageTimes, dict[str, Any]]:
        clock = self._clock
        times = clock._times()
        self.taken = (clock._version, times)
        return times, dict(clock._fields)
