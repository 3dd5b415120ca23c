"""The finishing writes of files embedded at once, several files to a transaction.

A one-paragraph file's job ends with one transaction: its chunks and vectors, its cache
entries, its job and store file succeeded. With many small files in flight, those
transactions were most of the worker's database work per file (a checkout, BEGIN, seven
statements, COMMIT). Here the writes that arrive while one group's transaction runs form the
next group, written with one statement per table: a lone file is written at once, as before;
a burst shares its round trips. Nothing waits for a group to fill.

A group's transaction either commits for all of its files or for none. If it fails, each file
is written again alone, so that one file's fault (it left the store, say) fails only that
file, as it would have without grouping. A file whose cancel was requested is left out of the
commit: nothing of it is written, and its caller hears so (None).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from prepshelf.store import chunks as chunks_db
from prepshelf.store import job_progress
from prepshelf.store import jobs as jobs_db
from prepshelf.store import transcripts as transcripts_db
from prepshelf.store.chunks import FileChunks
from prepshelf.store.db import Pool
from prepshelf.store.job_readouts import FinishedTimes
from prepshelf.store.jobs import WholeFileFinish

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WholeFileWrite:
    """Everything a file embedded at once writes when its job finishes."""

    finish: WholeFileFinish  # and with it, the job
    chunks: FileChunks
    result: dict[str, Any] | None  # what the parse reported (pages, OCR, a transcript)


async def write_result(
    conn: AsyncConnection[Any], job_id: str, result: dict[str, Any] | None
) -> None:
    if result is None:
        return
    await job_progress.set_result(conn, job_id=job_id, result=result)
    if "transcript" in result:  # the transcript is in the chunks now
        await transcripts_db.forget_segments(conn, job_id=job_id)


async def write_whole_files(
    conn: AsyncConnection[Any], writes: list[WholeFileWrite]
) -> dict[str, FinishedTimes]:
    """One transaction for all of `writes`; the finished jobs' times by job id (a job whose
    cancel was requested is left out, nothing of it written)."""
    async with conn.transaction():
        finished = await jobs_db.finish_whole_files(conn, [w.finish for w in writes])
        done = [w for w in writes if w.finish.job.id in finished]
        await chunks_db.replace_embedded_chunks(conn, [w.chunks for w in done])
        for w in done:
            await write_result(conn, w.finish.job.id, w.result)
    return finished


class WholeFileWriter:
    """Groups the finishing writes of the files in flight in one worker process."""

    def __init__(self, pool: Pool, *, max_files: int = 64) -> None:
        self._pool = pool
        self._max_files = max(1, max_files)
        self._waiting: list[tuple[WholeFileWrite, asyncio.Future[FinishedTimes | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, write: WholeFileWrite) -> FinishedTimes | None:
        """Write `write` with whatever else is waiting; None when its cancel was requested.
        Raises what writing it alone raised. A caller cancelled meanwhile leaves its write
        to complete or fail as a whole, never half done."""
        future: asyncio.Future[FinishedTimes | None] = asyncio.get_running_loop().create_future()
        # Read its outcome even when its caller has gone (cancelled): no "never retrieved".
        future.add_done_callback(_retrieved)
        self._waiting.append((write, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="whole-file-writes")
        return await asyncio.shield(future)

    async def _run(self) -> None:
        group: list[tuple[WholeFileWrite, asyncio.Future[FinishedTimes | None]]] = []
        try:
            while self._waiting:
                group = self._waiting[: self._max_files]
                del self._waiting[: len(group)]
                await self._write_group(group)
                group = []
        finally:  # stopped from outside (the worker's loop closing): nobody waits forever
            for _, future in group + self._waiting:
                if not future.done():
                    future.set_exception(RuntimeError("the worker is stopping"))

    async def _write_group(
        self, group: list[tuple[WholeFileWrite, asyncio.Future[FinishedTimes | None]]]
    ) -> None:
        try:
            async with self._pool.connection() as conn:
                finished = await write_whole_files(conn, [w for w, _ in group])
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exc=exc)
                return
            log.info("a group of %d file writes failed (%s); writing each alone", len(group), exc)
            for one in group:
                await self._write_group([one])
            return
        for write, future in group:
            _settle(future, result=finished.get(write.finish.job.id))


def _retrieved(future: asyncio.Future[FinishedTimes | None]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(
    future: asyncio.Future[FinishedTimes | None],
    *,
    result: FinishedTimes | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():  # the caller's shield was cancelled: nothing is waiting for it
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
