"""The /metrics exposition: every process's recorded metrics plus gauges read from the DB.

Queue depth and jobs by status are facts of the database, not of one process, so they are
read at scrape time (two small aggregate queries) instead of being kept as gauges that every
process would have to agree on.

A scrape never holds the event loop: merging the processes' files runs in a thread, one
render at a time, and the page is served again for `public_cache_s` (so scrapers in a loop
cost one render per interval, not one each).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import AsyncConnection

from prepshelf import metrics
from prepshelf.api.metrics_evals import eval_families
from prepshelf.jobs.queue import INGEST_QUEUE, MAINTENANCE_QUEUE, SMALL_INGEST_QUEUE
from prepshelf.store import job_readouts
from prepshelf.store import workers as workers_db

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class _Collected(Collector):
    """Metric families gathered beforehand, optionally after another registry's own."""

    def __init__(self, families: list[Metric], before: CollectorRegistry | None = None) -> None:
        self._families, self._before = families, before

    def collect(self) -> Iterator[Metric]:
        if self._before is not None:
            yield from self._before.collect()
        yield from self._families


async def database_families(conn: AsyncConnection[Any]) -> list[GaugeMetricFamily]:
    queue = GaugeMetricFamily(
        "prepshelf_queue_depth", "Queue messages waiting for a worker (todo)", labels=["queue"]
    )
    depth = {INGEST_QUEUE: 0, SMALL_INGEST_QUEUE: 0, MAINTENANCE_QUEUE: 0}
    depth |= await workers_db.queue_depths(conn)
    for name, n in sorted(depth.items()):
        queue.add_metric([name], n)

    jobs = GaugeMetricFamily(
        "prepshelf_jobs_by_status", "Jobs in the jobs table by status", labels=["status"]
    )
    counts = dict.fromkeys(JOB_STATUSES, 0) | await job_readouts.count_by_status(conn)
    for status, n in counts.items():
        jobs.add_metric([status], n)

    live = await workers_db.live_counts(conn, within_s=60)
    workers = GaugeMetricFamily(
        "prepshelf_live_workers", "Worker processes with a heartbeat in the last 60 s"
    )
    workers.add_metric([], live.processes)
    sub_workers = GaugeMetricFamily(
        "prepshelf_live_sub_workers",
        "Queue consumers (ingest, ingest_small, batches, runs, maintenance; "
        "five per worker process) beating in 60 s",
    )
    sub_workers.add_metric([], live.sub_workers)
    return [queue, jobs, workers, sub_workers]


def render(db_families: list[GaugeMetricFamily]) -> bytes:
    """Prometheus text: every process's shared files (or, without a multiprocess directory,
    this process's registry) plus the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if metrics.multiproc_dir() and getattr(values.ValueClass, "_multiprocess", False):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        registry.register(_Collected(list(db_families)))
    else:
        # No shared directory, or prometheus_client was imported before it was set (then
        # this process keeps its metrics in memory): serve this process's own registry.
        from prometheus_client import REGISTRY

        registry.register(_Collected(list(db_families), before=REGISTRY))
    return generate_latest(registry)


class MetricsPage:
    """The rendered exposition, cached for `cache_s` seconds; one render at a time."""

    def __init__(self, cache_s: float, *, max_evals: int) -> None:
        self._cache_s = cache_s
        self._max_evals = max_evals
        self._text = b""
        self._rendered_at = float("-inf")
        self._lock: asyncio.Lock | None = None  # made on the serving loop

    def _fresh(self) -> bool:
        return time.monotonic() - self._rendered_at < self._cache_s

    async def text(self, pool: Any) -> bytes:
        if self._fresh():
            return self._text
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._fresh():  # rendered while this scrape waited for the lock
                return self._text
            async with pool.connection(timeout=5) as conn:
                families = await database_families(conn)
                families += await eval_families(conn, limit=self._max_evals)
            self._text = await asyncio.to_thread(render, families)
            self._rendered_at = time.monotonic()
            return self._text
