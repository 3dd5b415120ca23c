"""/metrics, the audit trail and JSON logs, observed on a real API + worker after a batch."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import support.service
from support.corpus import CORPUS, needs_corpus
from support.service import Service

pytestmark = needs_corpus

GOOD = ["codeblock.md", "simple-table.md", "minimal-document.pdf"]
BAD = "bad/r2-user-password.pdf"
BATCH_ROUTE = "/v1/vector_stores/{vector_store_id}/file_batches"


@pytest.fixture(scope="module")
def svc(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("svc-visibility")),
        extra_env={"PREPSHELF_LOG_FORMAT": "json"},
    ) as service:
        yield service


@pytest.fixture(scope="module")
def batch(svc: Service) -> dict[str, Any]:
    """One finished batch: three good files and one that fails; scraped once mid-way."""
    with svc.http() as http:
        store = http.post("/v1/vector_stores", json={"name": "visibility"}).json()
        file_ids = []
        for name in [*GOOD, BAD]:
            body = (CORPUS / name).read_bytes()
            up = http.post(
                "/v1/files",
                data={"purpose": "assistants"},
                files={"file": (Path(name).name, io.BytesIO(body))},
            )
            file_ids.append(up.json()["id"])
        created = http.post(
            f"/v1/vector_stores/{store['id']}/file_batches", json={"file_ids": file_ids}
        ).json()
        during = httpx.get(f"http://127.0.0.1:{svc.port}/metrics", timeout=10)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            got = http.get(f"/v1/vector_stores/{store['id']}/file_batches/{created['id']}").json()
            if got["status"] != "in_progress":
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"batch did not finish:\n{svc.logs()}")
    return {"store": store, "batch": got, "file_ids": file_ids, "during": during}


def _scrape(svc: Service) -> dict[str, list[Any]]:
    response = httpx.get(f"http://127.0.0.1:{svc.port}/metrics", timeout=10)  # no auth
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = list(family.samples)
    families["_text"] = [response.text]
    return families


def _sample(families: dict[str, list[Any]], name: str, **labels: str) -> float:
    for family in families.values():
        for s in family:
            if (
                hasattr(s, "name")
                and s.name == name
                and all(s.labels.get(k) == v for k, v in labels.items())
            ):
                return float(s.value)
    return 0.0


def test_metrics_count_the_batch(svc: Service, batch: dict[str, Any]) -> None:
    assert batch["during"].status_code == 200
    assert batch["batch"]["file_counts"]["completed"] == len(GOOD)
    # Worker observations land in the shared directory after the job is committed: allow a
    # moment for the last one.
    deadline = time.monotonic() + 10
    while True:
        m = _scrape(svc)
        finished = _sample(m, "prepshelf_job_duration_seconds_count", status="succeeded")
        if finished >= len(GOOD) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for family in (
        "prepshelf_queue_depth",
        "prepshelf_jobs_by_status",
        "prepshelf_job_duration_seconds",
        "prepshelf_stage_duration_seconds",
        "prepshelf_chunks_embedded",
        "prepshelf_embedding_calls",
        "prepshelf_http_request_duration_seconds",
    ):
        assert family in m, f"{family} missing from /metrics"
    assert _sample(m, "prepshelf_jobs_by_status", status="succeeded") == len(GOOD)
    assert _sample(m, "prepshelf_jobs_by_status", status="failed") == 1
    assert _sample(m, "prepshelf_queue_depth", queue="ingest") == 0
    assert finished == len(GOOD)
    assert _sample(m, "prepshelf_job_duration_seconds_count", status="failed") == 1
    assert _sample(m, "prepshelf_stage_duration_seconds_count", stage="embedding") == len(GOOD)
    # The label is the embedder's kind: the suite's fake backend is labelled "fake".
    kind = "fake" if support.service.DEFAULT_BACKEND == "fake" else "local"
    assert _sample(m, "prepshelf_chunks_embedded_total", embedder=kind) > 0
    assert _sample(m, "prepshelf_embedding_calls_total", embedder=kind) > 0
    assert (
        _sample(
            m,
            "prepshelf_http_request_duration_seconds_count",
            method="POST",
            route=BATCH_ROUTE,
            status="2xx",
        )
        == 1
    )
    # Aggregates only: no object ids, no raw paths.
    text = m["_text"][0]
    assert batch["store"]["id"] not in text
    assert not any(fid in text for fid in batch["file_ids"])


def _audit(svc: Service, **params: Any) -> list[dict[str, Any]]:
    with svc.http() as http:
        return list(http.get("/v1/audit", params=params).json()["data"])


def _wait_for_audit(svc: Service, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows = _audit(svc, limit=100)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_audit_records_mutating_calls_only(svc: Service, batch: dict[str, Any]) -> None:
    rows = _wait_for_audit(svc, 2 + len(batch["file_ids"]))
    by_route: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_route.setdefault(f"{row['method']} {row['route']}", []).append(row)
    store_id = batch["store"]["id"]
    [created] = by_route["POST /v1/vector_stores"]
    assert created["object_id"] == store_id and created["status_code"] == 200
    assert created["actor"].startswith("key:") and svc.api_key not in json.dumps(rows)
    uploads = by_route["POST /v1/files"]
    assert {r["object_id"] for r in uploads} == set(batch["file_ids"])
    [batch_row] = by_route[f"POST {BATCH_ROUTE}"]
    assert batch_row["object_id"] == batch["batch"]["id"]
    assert batch_row["path_params"] == {"vector_store_id": store_id}
    assert not any(r["method"] == "GET" for r in rows)

    with svc.http() as http:
        assert http.delete("/v1/files/file-doesnotexist").status_code == 404
        assert http.post(f"/v1/vector_stores/{store_id}/search", json={"query": "x"}).is_success
        before = len(rows)
        deleted = http.delete(f"/v1/files/{batch['file_ids'][0]}")
        assert deleted.status_code == 200
    rows = _wait_for_audit(svc, before + 2)
    missing = [r for r in rows if r["object_id"] == "file-doesnotexist"]
    assert [(r["method"], r["route"], r["status_code"]) for r in missing] == [
        ("DELETE", "/v1/files/{file_id}", 404)
    ]
    assert not any(r["route"].endswith("/search") for r in rows)
    assert _audit(svc, object_id=batch["file_ids"][0], method="DELETE")[0]["status_code"] == 200

    # Cursor pagination, and another project's rows stay invisible.
    page = _audit(svc, limit=2)
    assert len(page) == 2
    assert _audit(svc, limit=2, after=page[-1]["id"])[0]["id"] not in {r["id"] for r in page}
    with svc.db() as db:
        db.execute(
            "INSERT INTO audit_events (id, project_id, actor, method, route, status_code) "
            "VALUES ('audit_other', 'proj_other', 'key:x', 'POST', '/v1/files', 200)"
        )
    assert "audit_other" not in {r["id"] for r in _audit(svc, limit=100)}


def test_worker_logs_are_json_lines_with_job_ids(svc: Service, batch: dict[str, Any]) -> None:
    with svc.db() as db:
        failed = db.execute(
            "SELECT * FROM jobs WHERE file_batch_id = %s AND status = 'failed'",
            [batch["batch"]["id"]],
        ).fetchone()
    assert failed is not None
    records = []
    for path in svc.data_dir.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
    assert records, svc.logs()
    mine = [r for r in records if r.get("job_id") == failed["id"]]
    assert mine, "no worker log line carries the failed job's id"
    line = next(r for r in mine if r["level"] == "ERROR")
    assert line["file_id"] == failed["file_id"]
    assert line["vector_store_id"] == batch["store"]["id"]
    assert line["file_batch_id"] == batch["batch"]["id"]
    # Quiet: procrastinate's per-job INFO chatter is gone at the default level.
    assert not any(
        r["logger"].startswith("procrastinate") and r["level"] == "INFO" for r in records
    )
    # Nothing secret: no API key anywhere in the logs.
    assert svc.api_key not in svc.logs()
    api_lines = [
        json.loads(line)
        for path in svc.data_dir.glob("api-*.log")
        for line in path.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    posts = [r for r in api_lines if r.get("vector_store_id") == batch["store"]["id"]]
    assert posts and all(r.get("request_id") for r in posts)
