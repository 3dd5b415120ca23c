"""Metrics recorded in process: embedder calls and errors, request latency by route template."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from prepshelf import logs, metrics
from prepshelf.api import audit, observe
from prepshelf.api.metrics import render


class FlakyEmbedder:
    model_id, dimensions, max_input_tokens = "flaky", 4, 16
    cache_suffix, last_report = "", None

    def __init__(self) -> None:
        self.fail_next = False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_next:
            raise TimeoutError("vendor timed out")
        return np.ones((len(texts), 4), dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [1 for _ in texts]


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_instrumented_embedder_counts_calls_and_errors() -> None:
    inner = FlakyEmbedder()
    embedder = metrics.instrument_embedder(inner)
    assert metrics.embedder_label(embedder) == "flaky"
    calls = _value("prepshelf_embedding_calls_total", embedder="flaky")
    errors = _value("prepshelf_embedding_errors_total", embedder="flaky")
    assert embedder.embed(["a", "b"]).shape == (2, 4)
    assert embedder.dimensions == 4 and embedder.count_tokens(["x"]) == [1]
    inner.fail_next = True
    with pytest.raises(TimeoutError):
        embedder.embed(["a"])
    assert _value("prepshelf_embedding_calls_total", embedder="flaky") == calls + 2
    assert _value("prepshelf_embedding_errors_total", embedder="flaky") == errors + 1
    metrics.chunks_embedded(embedder, 5)
    assert _value("prepshelf_chunks_embedded_total", embedder="flaky") >= 5


def test_render_adds_database_gauges_to_the_process_registry() -> None:
    depth = GaugeMetricFamily("prepshelf_queue_depth", "depth", labels=["queue"])
    depth.add_metric(["ingest"], 7)
    text = render([depth]).decode()
    assert 'prepshelf_queue_depth{queue="ingest"} 7.0' in text
    assert "prepshelf_http_request_duration_seconds" in text or "process_" in text


def _app() -> FastAPI:
    app = FastAPI()
    app.state.settings = SimpleNamespace(audit_enabled=False)
    seen: dict[str, str] = {}
    router = APIRouter(prefix="/v1/things")  # included routers, as the real app has

    @router.post("/{job_id}")
    def touch(job_id: str) -> dict[str, str]:
        seen.update(logs.current())
        return {"id": job_id}

    app.include_router(router)
    app.state.seen = seen
    observe.install(app)
    return app


def test_requests_are_timed_by_route_template_and_carry_ids() -> None:
    app = _app()
    route = "/v1/things/{job_id}"
    before = _value(
        "prepshelf_http_request_duration_seconds_count", method="POST", route=route, status="2xx"
    )
    with TestClient(app) as client:
        response = client.post("/v1/things/job_42", headers={"X-Request-ID": "req-1"})
        assert client.post("/nowhere").status_code == 404
    assert response.headers["x-request-id"] == "req-1"
    assert app.state.seen == {"request_id": "req-1", "job_id": "job_42"}
    after = _value(
        "prepshelf_http_request_duration_seconds_count", method="POST", route=route, status="2xx"
    )
    assert after == before + 1
    # A raw path never becomes a label.
    text = render([]).decode()
    assert "job_42" not in text
    assert 'route="unmatched"' in text


def test_labels_come_from_closed_sets() -> None:
    """Whatever a caller sends, a label is one of a few values (/metrics keeps its size)."""
    assert metrics.method_label("GET") == "GET" and metrics.method_label("PATCH") == "PATCH"
    for odd in ("MABCDEFGHIJKL", "get", "", "X" * 5000):
        assert metrics.method_label(odd) == "other"
    assert [metrics.status_label(s) for s in (200, 307, 404, 429, 503, 99, 1000)] == [
        "2xx",
        "3xx",
        "4xx",
        "4xx",
        "5xx",
        "other",
        "other",
    ]
    route = "/v1/things/{job_id}"
    for method in ("FOO", "BAR", "BAZ"):
        metrics.observe_request(method=method, route=route, status=418, seconds=0.01)
    text = render([]).decode()
    assert "FOO" not in text and "BAR" not in text and 'status="418"' not in text
    assert (
        _value(
            "prepshelf_http_request_duration_seconds_count",
            method="other",
            route=route,
            status="4xx",
        )
        >= 3
    )


def test_only_mutating_v1_routes_are_audited() -> None:
    assert audit.is_audited("POST", "/v1/files")
    assert audit.is_audited("DELETE", "/v1/vector_stores/{vector_store_id}")
    assert not audit.is_audited("GET", "/v1/files")
    assert not audit.is_audited("POST", "/v1/vector_stores/{vector_store_id}/search")
    assert not audit.is_audited("POST", None)
    assert audit.actor_for("Bearer sk-secret").startswith("key:")
    assert "sk-secret" not in audit.actor_for("Bearer sk-secret")
