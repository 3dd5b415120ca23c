"""A worker process's own heartbeat row (`worker_processes`), so /readyz counts processes.

procrastinate beats per sub-worker (ingest, batch and maintenance queues), without a name;
this row says "process host:pid is alive and runs N sub-workers". A clean stop deletes it; a
killed process stops beating and drops out of the count after the stall timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

import psycopg

from prepshelf.store import workers as workers_db
from prepshelf.store.db import Pool

log = logging.getLogger(__name__)


async def _beat_forever(pool: Pool, name: str, sub_workers: int, interval_s: float) -> None:
    while True:
        try:
            async with pool.connection(timeout=max(1.0, interval_s)) as conn:
                await workers_db.beat(
                    conn,
                    name=name,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    sub_workers=sub_workers,
                )
        except (psycopg.Error, TimeoutError, OSError) as exc:
            # The database is away: the sub-workers' own loop waits for it; keep trying.
            log.debug("worker heartbeat failed: %s", exc)
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def process_heartbeat(
    pool: Pool, *, name: str, sub_workers: int, interval_s: float
) -> AsyncIterator[None]:
    task = asyncio.create_task(_beat_forever(pool, name, sub_workers, interval_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(psycopg.Error, TimeoutError, OSError):
            async with asyncio.timeout(5), pool.connection(timeout=5) as conn:
                await workers_db.forget(conn, name=name)
