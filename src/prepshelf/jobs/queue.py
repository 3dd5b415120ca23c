"""The procrastinate app and transactional enqueueing.

Only this package imports procrastinate. The API defers by task name on its own database
connection, inside the transaction that writes the job row: no lost job, no ghost job.
"""

from __future__ import annotations

from typing import Any

import procrastinate
from psycopg import AsyncConnection

from prepshelf.store.db import procrastinate_pool

INGEST_QUEUE = "ingest"
# Files up to `small_file_max_bytes` have a lane (and a sub-worker) of their own: a one-
# paragraph file never waits for a slot held by a large file, and many of them in flight
# share model calls.
SMALL_INGEST_QUEUE = "ingest_small"
INGEST_QUEUES = (INGEST_QUEUE, SMALL_INGEST_QUEUE)
MAINTENANCE_QUEUE = "maintenance"
INGEST_TASK = "prepshelf.ingest_file"
BATCH_QUEUE = "batches"  # /v1/batches: its own sub-worker, so ingest never waits
BATCH_TASK = "prepshelf.embed_batch"


def build_app(
    database_url: str, *, pool_size: int = 4, **worker_defaults: Any
) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=database_url,
        min_size=1,
        max_size=pool_size,
        kwargs={"connect_timeout": 10},
        pool_factory=procrastinate_pool,
    )
    return procrastinate.App(connector=connector, worker_defaults=worker_defaults or None)  # type: ignore[arg-type]


async def defer_ingest_jobs(
    app: procrastinate.App, conn: AsyncConnection[Any], job_ids: list[str], small: set[str]
) -> list[int]:
    """Queue one ingest job per id on `conn` (caller's transaction), those in `small` in the
    small files' lane; return the queue job ids in the order of `job_ids`."""
    queue_ids: dict[str, int] = {}
    for queue in INGEST_QUEUES:
        lane = [jid for jid in job_ids if (jid in small) == (queue == SMALL_INGEST_QUEUE)]
        if not lane:
            continue
        deferrer = app.configure_task(INGEST_TASK, queue=queue, connection=conn)
        kwargs: list[dict[str, Any]] = [{"job_id": jid} for jid in lane]
        ids = await deferrer.batch_defer_async(*kwargs)
        queue_ids |= dict(zip(lane, ids, strict=True))
    return [queue_ids[jid] for jid in job_ids]


async def cancel_queued(app: procrastinate.App, queue_job_ids: list[int]) -> None:
    """Best effort: drop queue messages of jobs already marked cancelled in our table.

    A message that slips through is harmless: the task sees the job is final and returns.
    """
    for qid in queue_job_ids:
        await app.job_manager.cancel_job_by_id_async(qid)
