"""The procrastinate app and transactional enqueueing.

Only this package imports procrastinate. The API defers by task name on its own database
connection, inside the transaction that writes the job row: no lost job, no ghost job.
"""

from __future__ import annotations

from typing import Any

import procrastinate
from psycopg import AsyncConnection

INGEST_QUEUE = "ingest"
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
    )
    return procrastinate.App(connector=connector, worker_defaults=worker_defaults or None)  # type: ignore[arg-type]


async def defer_ingest_jobs(
    app: procrastinate.App, conn: AsyncConnection[Any], job_ids: list[str]
) -> list[int]:
    """Queue one ingest job per id on `conn` (caller's transaction); return queue job ids."""
    if not job_ids:
        return []
    deferrer = app.configure_task(INGEST_TASK, queue=INGEST_QUEUE, connection=conn)
    kwargs: list[dict[str, Any]] = [{"job_id": jid} for jid in job_ids]
    return await deferrer.batch_defer_async(*kwargs)


async def cancel_queued(app: procrastinate.App, queue_job_ids: list[int]) -> None:
    """Best effort: drop queue messages of jobs already marked cancelled in our table.

    A message that slips through is harmless: the task sees the job is final and returns.
    """
    for qid in queue_job_ids:
        await app.job_manager.cancel_job_by_id_async(qid)
