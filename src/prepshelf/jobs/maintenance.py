"""Periodic upkeep, once per period for the whole cluster however many workers run.

Procrastinate defers a periodic task once per (task, timestamp) even when every worker's
scheduler tries, and the queueing lock keeps a slow run from piling up behind itself. Each
step commits in short chunks and is safe to run twice or concurrently:

- expire vector stores past `expires_at` (sticky `expired_at`; searches are refused),
- prune audit rows past the retention (the table may not exist: skipped),
- delete orphan blobs (no `files` row, older than a grace period) and stale partial uploads,
- drop embedding-cache entries older than N days (age, not last use: a cache hit stays a
  read, and chunks keep their own vectors, so a dropped entry costs at most one re-embedding).

Job events are pruned by `jobs/prune_events.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import procrastinate
from psycopg import AsyncConnection

from prepshelf.jobs.queue import MAINTENANCE_QUEUE
from prepshelf.store import audit as audit_db
from prepshelf.store import chunks as chunks_db
from prepshelf.store import files as files_db
from prepshelf.store import vector_stores as vector_stores_db
from prepshelf.store.blobs import BlobInfo, BlobStore

if TYPE_CHECKING:
    from prepshelf.jobs.resources import WorkerResources

log = logging.getLogger(__name__)

Conn = AsyncConnection[Any]
FILES_PREFIX = "files/"  # blobs owned by `files` rows; other prefixes belong to their features


async def expire_vector_stores(conn: Conn) -> list[str]:
    """Mark stores whose expiry passed; return their ids."""
    return await vector_stores_db.expire_due_stores(conn)


async def prune_audit(conn: Conn, *, older_than_s: float) -> int:
    return await audit_db.prune_events(conn, older_than_s=older_than_s)


async def vacuum_embedding_cache(conn: Conn, *, max_age_days: int) -> int:
    return await chunks_db.drop_cached_embeddings(conn, max_age_days=max_age_days)


async def delete_orphan_blobs(conn: Conn, blobs: BlobStore, *, grace_s: float) -> int:
    """Delete file blobs without a `files` row, and partial uploads, older than `grace_s`.

    The grace period covers an upload whose blob is complete but whose row is not yet
    committed; a row inserted after our check would need an upload older than the grace.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    old = [b for b in await asyncio.to_thread(_list, blobs) if b.modified < cutoff]
    removed = 0
    for partial in [b for b in old if b.partial]:
        await asyncio.to_thread(blobs.discard_partial, partial)
        removed += 1
    complete = [b.key for b in old if not b.partial]
    for start in range(0, len(complete), 1000):
        keys = complete[start : start + 1000]
        known = await files_db.known_blob_keys(conn, keys=keys)
        for key in keys:
            if key not in known:
                await asyncio.to_thread(blobs.delete, key)
                removed += 1
    return removed


def _list(blobs: BlobStore) -> list[BlobInfo]:
    return list(blobs.list_blobs(FILES_PREFIX))


async def run_all(res: WorkerResources) -> dict[str, int]:
    """Every step once; a failing step is logged and does not stop the others."""
    s = res.settings

    async def expire(conn: Conn) -> int:
        return len(await expire_vector_stores(conn))

    steps: dict[str, Callable[[Conn], Awaitable[int]]] = {
        "expired_vector_stores": expire,
        "audit_rows_pruned": lambda c: prune_audit(c, older_than_s=s.audit_retention_s),
        "orphan_blobs_deleted": lambda c: delete_orphan_blobs(
            c, res.blobs, grace_s=s.orphan_blob_grace_s
        ),
        "embedding_cache_dropped": lambda c: vacuum_embedding_cache(
            c, max_age_days=s.embedding_cache_max_age_days
        ),
    }
    done: dict[str, int] = {}
    for name, step in steps.items():
        try:
            async with res.pool.connection() as conn:
                done[name] = await step(conn)
        except Exception:
            log.exception("maintenance step %s failed; the next period retries it", name)
    if any(done.values()):
        log.info("maintenance: %s", ", ".join(f"{k}={v}" for k, v in done.items() if v))
    return done


def register(app: procrastinate.App, res: WorkerResources) -> None:
    minutes = max(1, min(59, res.settings.maintenance_interval_s // 60))

    @app.periodic(cron=f"*/{minutes} * * * *", periodic_id="maintenance")
    @app.task(
        name="prepshelf.maintenance",
        queue=MAINTENANCE_QUEUE,
        queueing_lock="prepshelf.maintenance",
    )
    async def maintenance(timestamp: int) -> None:
        await run_all(res)
