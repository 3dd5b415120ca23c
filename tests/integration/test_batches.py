"""/v1/batches for /v1/embeddings through the official SDK: create, retrieve, list, cancel,
output files, malformed input, a worker killed mid-batch, and vectors equal to the short path."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from prepshelf.pipeline import cl100k
from support import postgres as pg
from support.service import Service

MODEL = "all-MiniLM-L6-v2"
FINAL = {"completed", "failed", "expired", "cancelled"}


def _line(custom_id: str, body: dict[str, Any], **over: Any) -> str:
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}
    line.update(over)
    return json.dumps(line)


def _requests(n: int, prefix: str = "r") -> list[str]:
    return [
        _line(
            f"{prefix}-{i}", {"model": MODEL, "input": f"sentence number {i} about topic {i % 7}"}
        )
        for i in range(n)
    ]


def _create(client: Any, lines: list[str]) -> Any:
    data = ("\n".join(lines) + "\n").encode()
    f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h"
    )


def _wait(client: Any, batch_id: str, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in FINAL:
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} did not finish: {batch}")


def _jsonl(client: Any, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def _wait_progress(svc: Service, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with svc.http() as http:
        while time.monotonic() < deadline:
            job = http.get(f"/v1/jobs/{job_id}").json()
            if job["progress"]["done"] > 0:
                return job
            time.sleep(0.1)
    raise AssertionError("no progress")


def test_batch_end_to_end(service: Service) -> None:
    client = service.openai()
    lines = _requests(600)
    lines.append(_line("multi", {"model": MODEL, "input": ["alpha beta", "gamma delta"]}))
    lines.append(_line("b64", {"model": MODEL, "input": "alpha beta", "encoding_format": "base64"}))
    lines.append(_line("bad-model", {"model": "gpt-4o", "input": "x"}))
    created = _create(client, lines)
    assert created.status == "validating" and created.object == "batch"
    assert created.id.startswith("batch_") and created.endpoint == "/v1/embeddings"
    assert created.expires_at - created.created_at == 24 * 3600
    batch = _wait(client, created.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.total == 603
    assert batch.request_counts.completed == 602 and batch.request_counts.failed == 1
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(batch, stamp) is not None
    assert batch.failed_at is None and batch.cancelled_at is None
    assert batch.usage is not None and batch.usage.input_tokens > 0

    out = _jsonl(client, batch.output_file_id)
    ids = Counter(x["custom_id"] for x in out)
    assert len(out) == 602 and max(ids.values()) == 1 and "bad-model" not in ids
    first = next(x for x in out if x["custom_id"] == "r-0")
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["request_id"]
    assert first["response"]["body"]["object"] == "list"
    errors = _jsonl(client, batch.error_file_id)
    assert [e["custom_id"] for e in errors] == ["bad-model"]
    assert errors[0]["response"]["status_code"] == 404
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
    meta = client.files.retrieve(batch.output_file_id)
    assert meta.purpose == "batch_output"

    # Same vectors as the short path, for the same inputs.
    by_id = {x["custom_id"]: x["response"]["body"] for x in out}
    sync = client.embeddings.create(
        model=MODEL,
        input=["sentence number 0 about topic 0", "alpha beta", "gamma delta"],
        encoding_format="float",
    )
    assert np.allclose(by_id["r-0"]["data"][0]["embedding"], sync.data[0].embedding, atol=1e-5)
    multi = by_id["multi"]["data"]
    assert [d["index"] for d in multi] == [0, 1]
    assert np.allclose(multi[0]["embedding"], sync.data[1].embedding, atol=1e-5)
    assert np.allclose(multi[1]["embedding"], sync.data[2].embedding, atol=1e-5)
    b64 = np.frombuffer(base64.b64decode(by_id["b64"]["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(b64, sync.data[1].embedding, atol=1e-5)

    # The job behind it, visible through /v1/jobs.
    extra = batch.model_extra or {}
    with service.http() as http:
        job = http.get(f"/v1/jobs/{extra['job_id']}").json()
    assert job["kind"] == "embed_batch" and job["status"] == "succeeded"
    assert job["progress"] == {"done": 603, "total": 603, "unit": "lines"}
    assert (job["batch_id"], job["file_batch_id"]) == (batch.id, None)
    assert job["links"]["batch"] == f"/v1/batches/{batch.id}"
    with service.http() as http:
        found = http.get("/v1/jobs", params={"batch_id": batch.id}).json()["data"]
        assert [j["id"] for j in found] == [job["id"]]
        assert http.get("/v1/jobs", params={"file_batch_id": batch.id}).json()["data"] == []


def test_batch_lines_follow_the_short_paths_rules(service: Service) -> None:
    """cl100k token ids and inputs over the window: the same vectors and usage as a direct
    /v1/embeddings call (one parser, one planner for both)."""
    client = service.openai()
    long_text = " ".join(f"Clause {i}: leave after the birth of a child." for i in range(80))
    ids = cl100k.encoding().encode("hello world")
    lines = [
        _line("long", {"model": MODEL, "input": [long_text, "short"]}),
        _line("ids", {"model": MODEL, "input": [ids]}),
    ]
    batch = _wait(client, _create(client, lines).id)
    assert batch.status == "completed" and batch.request_counts.completed == 2, batch
    by_id = {x["custom_id"]: x["response"]["body"] for x in _jsonl(client, batch.output_file_id)}
    direct = client.embeddings.create(
        model=MODEL, input=[long_text, "short"], encoding_format="float"
    )
    assert by_id["long"]["usage"]["prompt_tokens"] == direct.usage.prompt_tokens
    for got, want in zip(by_id["long"]["data"], direct.data, strict=True):
        assert np.allclose(got["embedding"], want.embedding, atol=1e-5)
    text = client.embeddings.create(model=MODEL, input="hello world", encoding_format="float")
    assert np.allclose(by_id["ids"]["data"][0]["embedding"], text.data[0].embedding, atol=1e-5)


def test_list_and_retrieve_are_project_scoped(service: Service) -> None:
    client = service.openai()
    a = _create(client, _requests(3, "la"))
    b = _create(client, _requests(3, "lb"))
    listed = [x.id for x in client.batches.list(limit=100)]
    assert listed.index(b.id) < listed.index(a.id)  # newest first
    page = client.batches.list(limit=1)
    assert len(page.data) == 1 and page.has_more
    nxt = client.batches.list(limit=1, after=page.data[0].id)
    assert nxt.data[0].id != page.data[0].id
    with service.db() as db:
        db.execute("UPDATE batches SET project_id = 'someone-else' WHERE id = %s", [a.id])
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve(a.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel(a.id)
    assert a.id not in [x.id for x in client.batches.list(limit=100)]
    _wait(client, b.id)


def test_malformed_lines_fail_the_batch_with_line_numbers(service: Service) -> None:
    client = service.openai()
    lines = [
        *_requests(2, "ok"),
        "{not json",
        json.dumps({"method": "POST", "url": "/v1/embeddings", "body": {}}),
        _line("wrong-url", {"model": MODEL, "input": "x"}, url="/v1/chat/completions"),
        _line("ok-0", {"model": MODEL, "input": "again"}),
        json.dumps([1, 2]),
    ]
    batch = _wait(client, _create(client, lines).id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors is not None and batch.errors.object == "list"
    got = {(e.line, e.code, e.param) for e in batch.errors.data or []}
    assert got == {
        (3, "invalid_json_line", None),
        (4, "missing_required_parameter", "custom_id"),
        (5, "invalid_url", "url"),
        (6, "duplicate_custom_id", "custom_id"),
        (7, "invalid_json_line", None),
    }
    assert batch.output_file_id is None
    # Its job serves no file in a vector store: a retry is refused, not attempted.
    job_id = (batch.model_extra or {})["job_id"]
    with service.http() as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
        retried = http.post(f"/v1/jobs/{job_id}/retry")
    assert job["status"] == "failed", job
    assert retried.status_code == 409 and retried.json()["error"]["param"] == "job_id", retried.text


def test_create_refusals(service: Service) -> None:
    client = service.openai()
    f = client.files.create(file=("x.txt", io.BytesIO(b"hello")), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(
            input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h"
        )
    assert info.value.body["param"] == "input_file_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert info.value.body["param"] == "endpoint"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-nope", endpoint="/v1/embeddings", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_cancel_writes_partial_output(service: Service) -> None:
    client = service.openai()
    n = 4000
    created = _create(client, _requests(n, "c"))
    _wait_progress(service, (created.model_extra or {})["job_id"])
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = _wait(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at and batch.cancelling_at
    out = _jsonl(client, batch.output_file_id)
    errors = _jsonl(client, batch.error_file_id)
    assert 0 < len(out) < n
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    every = Counter(x["custom_id"] for x in out + errors)
    assert len(every) == n and max(every.values()) == 1
    with service.http() as http:
        job = http.get(f"/v1/jobs/{(batch.model_extra or {})['job_id']}").json()
    assert job["status"] == "cancelled"


def test_expiry_writes_partial_output(service: Service) -> None:
    """Past its completion window a batch ends `expired`: the slices already embedded are in
    the output file, every request never run has a `batch_expired` error line."""
    client = service.openai()
    n = 6000
    created = _create(client, _requests(n, "e"))
    _wait_progress(service, (created.model_extra or {})["job_id"])
    # Let the 24 h window run out now instead of waiting for it.
    with service.db() as db:
        db.execute("UPDATE batches SET expires_at = clock_timestamp() WHERE id = %s", [created.id])
    batch = _wait(client, created.id)
    assert batch.status == "expired" and batch.expired_at, batch
    out = _jsonl(client, batch.output_file_id)
    errors = _jsonl(client, batch.error_file_id)
    assert 0 < len(out) < n
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    every = Counter(x["custom_id"] for x in out + errors)
    assert len(every) == n and max(every.values()) == 1


@pytest.fixture(scope="module")
def fragile(
    postgres: pg.TestPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """A service of its own (database too) with one worker and a fast sweeper, to kill workers."""
    with Service(
        postgres.new_database(),
        Path(tmp_path_factory.mktemp("fragile")),
        workers=1,
        extra_env={
            "PREPSHELF_STALL_TIMEOUT_S": "3",
            "PREPSHELF_HEARTBEAT_INTERVAL_S": "0.5",
            "PREPSHELF_SWEEP_INTERVAL_S": "1",
            "PREPSHELF_BATCH_SLICE_LINES": "64",
        },
    ) as svc:
        yield svc


def test_worker_killed_mid_batch_resumes_without_duplicates(fragile: Service) -> None:
    client = fragile.openai()
    n = 3000
    created = _create(client, _requests(n, "k"))
    job_id = (created.model_extra or {})["job_id"]
    _wait_progress(fragile, job_id)
    victim = fragile.workers[0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    fragile.start_worker()
    batch = _wait(client, created.id, timeout_s=300)
    assert batch.status == "completed", (batch, fragile.logs())
    assert batch.request_counts.total == n == batch.request_counts.completed
    out = _jsonl(client, batch.output_file_id)
    counts = Counter(x["custom_id"] for x in out)
    assert len(out) == n and len(counts) == n and max(counts.values()) == 1
    with fragile.http() as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["attempts"] >= 2
    assert any("worker lost" in (a.get("outcome") or "") for a in job["attempt_log"])
