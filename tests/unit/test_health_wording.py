"""/readyz and /metrics describe the sub-workers the worker really runs."""

from __future__ import annotations

from prepshelf.api.routes.health import QUEUES_CONSUMED
from prepshelf.jobs.worker import SUB_WORKER_QUEUES


def test_readyz_names_the_queues_each_worker_consumes() -> None:
    assert QUEUES_CONSUMED == SUB_WORKER_QUEUES


def test_metric_help_counts_the_sub_workers() -> None:
    from pathlib import Path

    import prepshelf.api.metrics as api_metrics

    text = Path(api_metrics.__file__).read_text()
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    assert f"{words[len(SUB_WORKER_QUEUES)]} per worker process" in text
    for queue in SUB_WORKER_QUEUES:
        assert queue in text
