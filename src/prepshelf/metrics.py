"""Prometheus metrics that API and worker processes record (prometheus-client).

Processes on one host share PROMETHEUS_MULTIPROC_DIR (under the data dir, set by the CLI
before anything imports prometheus_client: the library picks its storage at import); the
API's /metrics merges the files of every process and adds gauges read from the database
at scrape time (`api/metrics.py`). Only aggregates: labels are routes, stages, statuses
and embedder kinds, never ids or text. Every label comes from a closed set, whatever a caller
sends: request methods outside the known verbs count as `other`, paths as their route template
(or `unmatched`), statuses as their class (`2xx`…`5xx`); so /metrics and the multiprocess
files keep their size under hostile traffic.

The metric objects are built on first use, so importing this module costs nothing and
does not fix prometheus_client's storage mode too early.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from prometheus_client import Counter, Gauge, Histogram
    from psycopg import AsyncConnection

    from prepshelf.pipeline.embed import Embedder, VendorReport
    from prepshelf.store.job_readouts import FinishedTimes

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def use_multiproc_dir(path: Path, *, wipe: bool = False) -> Path:
    """Point this process (and the children it starts) at a shared metrics directory.

    An explicit PROMETHEUS_MULTIPROC_DIR wins. `wipe` (serve's start) removes files left by
    processes of an earlier run, whose pids may be reused by this one.
    """
    target = Path(os.environ.get(MULTIPROC_ENV) or path)
    target.mkdir(parents=True, exist_ok=True)
    if wipe:
        for stale in target.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(target)
    return target


def multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True)
class _Metrics:
    job_duration: Histogram
    stage_duration: Histogram
    chunks_embedded: Counter
    embedding_calls: Counter
    embedding_errors: Counter
    embedding_seconds: Histogram
    http_duration: Histogram
    rate_limited: Counter
    key_requests: Gauge


_create_lock = threading.Lock()


def _m() -> _Metrics:
    # lru_cache alone lets two threads (two jobs' embed calls) both create, and register,
    # the collectors on first use; prometheus refuses the second registration.
    with _create_lock:
        return _create()


@lru_cache(maxsize=1)
def _create() -> _Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    return _Metrics(
        job_duration=Histogram(
            "prepshelf_job_duration_seconds",
            "Wall time of finished jobs, first start to finish (all attempts)",
            ["kind", "status"],
            buckets=_JOB_BUCKETS,
        ),
        stage_duration=Histogram(
            "prepshelf_stage_duration_seconds",
            "Time finished jobs spent in each stage",
            ["stage"],
            buckets=_STAGE_BUCKETS,
        ),
        chunks_embedded=Counter(
            "prepshelf_chunks_embedded",
            "Chunks given a vector (computed or from the embedding cache)",
            ["embedder"],
        ),
        embedding_calls=Counter(
            "prepshelf_embedding_calls", "Calls to an embedder (vendor requests)", ["embedder"]
        ),
        embedding_errors=Counter(
            "prepshelf_embedding_errors",
            "Embedding calls that failed (including vendor faults that were retried)",
            ["embedder"],
        ),
        embedding_seconds=Histogram(
            "prepshelf_embedding_call_duration_seconds",
            "Time one embed() of a batch took",
            ["embedder"],
            buckets=_STAGE_BUCKETS,
        ),
        http_duration=Histogram(
            "prepshelf_http_request_duration_seconds",
            "API request latency by route template",
            ["method", "route", "status"],
            buckets=_HTTP_BUCKETS,
        ),
        rate_limited=Counter(
            "prepshelf_rate_limited",
            "Requests refused with 429 by a per-key limit (rate, concurrency or streams)",
            ["limit"],
        ),
        key_requests=Gauge(
            "prepshelf_key_requests",
            "Keyed requests at the front desk now: running, waiting for a slot of their key, "
            "open event streams (summed over keys and API processes)",
            ["state"],
            multiprocess_mode="livesum",
        ),
    )


# --- API side -------------------------------------------------------------------------


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RATE_LIMITS = ("rate", "concurrency", "streams")


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


def status_label(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """`route` must be a route template or `unmatched`, never a raw path."""
    labels = (method_label(method), route, status_label(status))
    _m().http_duration.labels(*labels).observe(seconds)


def rate_limited(limit: str) -> None:
    _m().rate_limited.labels(limit if limit in RATE_LIMITS else "rate").inc()


def key_requests(running: int, waiting: int, streams: int) -> None:
    gauge = _m().key_requests
    gauge.labels("running").set(running)
    gauge.labels("waiting").set(waiting)
    gauge.labels("streams").set(streams)


# --- worker side ----------------------------------------------------------------------


def embedder_label(embedder: object) -> str:
    """`LocalEmbedder` → `local`: the kind of embedder, never a URL or a key."""
    inner = embedder.inner if isinstance(embedder, InstrumentedEmbedder) else embedder
    name = type(inner).__name__.lower().removesuffix("embedder")
    return name or "embedder"


def chunks_embedded(embedder: object, count: int) -> None:
    if count:
        _m().chunks_embedded.labels(embedder_label(embedder)).inc(count)


class InstrumentedEmbedder:
    """Wraps the worker's embedder to count calls, errors and time; forwards the protocol.

    A remote embedder's per-call `last_report` (vendor calls and retried faults) is read in
    the same thread right after `embed`, so its retries count as errors too.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._label = embedder_label(inner)

    # The wrapped embedder may learn these when its model loads: always read through.
    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @model_id.setter
    def model_id(self, value: str) -> None:
        self.inner.model_id = value

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    @dimensions.setter
    def dimensions(self, value: int) -> None:
        self.inner.dimensions = value

    @property
    def max_input_tokens(self) -> int:
        return self.inner.max_input_tokens

    @max_input_tokens.setter
    def max_input_tokens(self, value: int) -> None:
        self.inner.max_input_tokens = value

    @property
    def cache_suffix(self) -> str:
        return self.inner.cache_suffix

    @property
    def last_report(self) -> VendorReport | None:
        return self.inner.last_report

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        m = _m()
        start = time.perf_counter()
        failed = False
        try:
            return self.inner.embed(texts)
        except BaseException:
            failed = True
            raise
        finally:
            m.embedding_seconds.labels(self._label).observe(time.perf_counter() - start)
            report = self.inner.last_report
            calls = report.calls if report is not None and report.calls else 1
            errors = (report.retries if report is not None else 0) + int(failed)
            m.embedding_calls.labels(self._label).inc(calls)
            if errors:
                m.embedding_errors.labels(self._label).inc(errors)


def instrument_embedder(embedder: Embedder) -> Embedder:
    return InstrumentedEmbedder(embedder)


async def observe_finished_job(conn: AsyncConnection[Any], *, job_id: str) -> None:
    """Record a finished job's duration and stage times (read back from its row).

    Called after the job's final state is committed: a failure here must never touch the
    job, so it is logged and dropped.
    """
    # Imported here: importing this module stays free of database code.
    from prepshelf.store import job_readouts

    try:
        times = await job_readouts.finished_times(conn, job_id=job_id)
    except Exception as exc:
        log.warning("metrics: could not read job %s for its durations: %s", job_id, exc)
        return
    if times is not None:
        observe_finished(times)


def observe_finished(times: FinishedTimes) -> None:
    """Record a finished job's duration and stage times, as its final write returned them."""
    m = _m()
    if times.seconds is not None:
        m.job_duration.labels(times.kind, times.status).observe(max(0.0, times.seconds))
    for stage, seconds in times.stage_durations.items():
        m.stage_duration.labels(stage).observe(max(0.0, seconds))
