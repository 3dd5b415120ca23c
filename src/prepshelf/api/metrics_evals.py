"""Gauges of the latest evaluation scores, read from the database at scrape time, so an
operator can alert when a nightly run's figures drop.

Labels are opaque ids and testing-criterion names (restricted to [A-Za-z0-9_.:-]{1,64} at
creation), never eval names or questions; at most PREPSHELF_EVAL_METRICS_MAX_EVALS evals
(the most recently completed) are exported, which bounds the series.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily
from psycopg import AsyncConnection

from prepshelf.pipeline.eval_diff import METRICS
from prepshelf.store import eval_runs as eval_runs_db

_QUANTILES = {"p50": "0.5", "p90": "0.9", "p99": "0.99"}


async def eval_families(conn: AsyncConnection[Any], *, limit: int) -> list[GaugeMetricFamily]:
    score = GaugeMetricFamily(
        "prepshelf_eval_score",
        "Latest completed evaluation run: hit@1/3/10, MRR and nDCG@10 (0..1) per eval and "
        "testing criterion",
        labels=["eval_id", "testing_criteria", "metric"],
    )
    latency = GaugeMetricFamily(
        "prepshelf_eval_search_latency_seconds",
        "Latest completed evaluation run: search latency percentiles (query embedding + search)",
        labels=["eval_id", "testing_criteria", "quantile"],
    )
    completed = GaugeMetricFamily(
        "prepshelf_eval_last_completed_timestamp_seconds",
        "When each eval's latest run completed (Unix seconds): alert when it gets old",
        labels=["eval_id"],
    )
    for run in await eval_runs_db.latest_scores(conn, limit=limit):
        if run.completed_at is not None:
            completed.add_metric([run.eval_id], run.completed_at.timestamp())
        for criterion in run.per_testing_criteria_results or []:
            name = str(criterion["testing_criteria"])
            for metric in METRICS:
                value = criterion["metrics"].get(metric)
                if value is not None:
                    score.add_metric([run.eval_id, name, metric], float(value))
            for key, quantile in _QUANTILES.items():
                ms = (criterion.get("latency_ms") or {}).get(key)
                if ms is not None:
                    latency.add_metric([run.eval_id, name, quantile], float(ms) / 1000)
    return [score, latency, completed]
