"""Job guarantees, proved with real faults, on a service whose embedder is a fake vendor.

The vendor is a real HTTP server on loopback (tests/support/fake_vendor.py); the API and the
workers are real processes. Faults: vendor timeouts, 429/5xx, malformed answers, SIGTERM and
SIGKILL of the worker mid-file, cancellation, duplicate requests.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faults.helpers import (
    generated_text,
    ingest_text,
    job,
    kill9,
    upload,
    wait_job,
    wait_next_sweep,
    worker_of,
)
from support.fake_vendor import FakeVendor
from support.service import FAST_RECOVERY, Service

BATCH = 4


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    fake = FakeVendor(dims=8, hang_s=1.5).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def svc(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, vendor: FakeVendor
) -> Iterator[Service]:
    env = {
        "PREPSHELF_EMBEDDER": "remote",
        "PREPSHELF_REMOTE_EMBED_URL": vendor.url,
        "PREPSHELF_REMOTE_EMBED_MODEL": "fake-vendor-embed",
        "PREPSHELF_REMOTE_EMBED_DIMENSIONS": "8",
        "PREPSHELF_REMOTE_EMBED_API_KEY": "sk-vendor-secret",
        "PREPSHELF_REMOTE_EMBED_MAX_INPUT_TOKENS": "100",
        "PREPSHELF_REMOTE_EMBED_TIMEOUT_S": "1",
        "PREPSHELF_REMOTE_EMBED_RETRIES": "3",
        "PREPSHELF_REMOTE_EMBED_BACKOFF_BASE_S": "0.05",
        "PREPSHELF_EMBED_CHECKPOINT_ROWS": str(BATCH),
        "PREPSHELF_MAX_ATTEMPTS": "3",
        "PREPSHELF_RETRY_BASE_DELAY_S": "0.5",
        "PREPSHELF_RETRY_MAX_DELAY_S": "2",
        **FAST_RECOVERY,
        "PREPSHELF_WORKER_NICE": "0",
    }
    with Service(
        database_url, Path(tmp_path_factory.mktemp("remote")), workers=1, extra_env=env
    ) as service:
        yield service


@pytest.fixture(scope="module")
def store(svc: Service) -> str:
    with svc.http() as http:
        resp = http.post("/v1/vector_stores", json={"name": "faults"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])


@pytest.fixture(autouse=True)
def _vendor_ok(vendor: FakeVendor) -> Iterator[None]:
    vendor.set()
    vendor.delay_s = 0.0
    yield
    vendor.set()
    vendor.delay_s = 0.0


def _ensure_worker(svc: Service) -> None:
    if not any(p.poll() is None for p in svc.workers):
        svc.start_worker()


def _outcomes(row: dict[str, Any]) -> list[str]:
    return [a["outcome"] for a in row["attempt_log"]]


# --- model recorded -------------------------------------------------------------------


def test_store_records_the_remote_model(svc: Service, store: str) -> None:
    with svc.http() as http:
        body = http.get(f"/v1/vector_stores/{store}").json()
    with svc.db() as db:
        row = db.execute(
            "SELECT embedding_model, dimensions FROM vector_stores WHERE id = %s", [store]
        ).fetchone()
    assert body["id"] == store
    assert row == {"embedding_model": "fake-vendor-embed", "dimensions": 8}


# --- vendor faults --------------------------------------------------------------------


def test_transient_vendor_faults_are_retried_and_visible(
    svc: Service, store: str, vendor: FakeVendor
) -> None:
    vendor.set(500, (429, {"Retry-After": "2"}), "timeout")
    with svc.http() as http:
        _, job_id = ingest_text(http, store, "A short note about rivers and stones.", "note.txt")
    row = wait_job(svc, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["attempts"] == 1
    notes = [a for a in row["attempt_log"] if a["outcome"] == "vendor retries"]
    assert notes and notes[0]["retries"] == 3 and notes[0]["worker"] and notes[0]["at"]
    answers = [c.answer for c in vendor.calls]
    assert answers[:4] == ["500", str((429, {"Retry-After": "2"})), "timeout", "ok"]
    # Retry-After honoured: the call after the 429 came at least 2 s later.
    assert vendor.calls[2].at - vendor.calls[1].at >= 2.0


def test_vendor_down_longer_than_the_retries_requeues_the_job(
    svc: Service, store: str, vendor: FakeVendor
) -> None:
    vendor.set(503, 503, 503, 503)  # one embed() call: 1 try + 3 retries, all refused
    with svc.http() as http:
        _, job_id = ingest_text(http, store, "Vendor outage, then recovery.", "outage.txt")
    row = wait_job(svc, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["attempts"] == 2
    released = [a for a in row["attempt_log"] if a["outcome"] == "retry scheduled"]
    assert len(released) == 1
    message = released[0]["error"]["message"]
    assert f"{vendor.url}/embeddings" in message and "4 attempts" in message
    assert "503" in message and "sk-vendor-secret" not in message


@pytest.mark.parametrize("fault", ["malformed", 401, 400])
def test_permanent_vendor_faults_fail_the_file(
    svc: Service, store: str, vendor: FakeVendor, fault: Any
) -> None:
    vendor.set(default=fault)
    with svc.http() as http:
        file_id, job_id = ingest_text(http, store, f"Doomed text {fault}.", f"doomed-{fault}.txt")
        row = wait_job(svc, job_id)
        vsf = http.get(f"/v1/vector_stores/{store}/files/{file_id}").json()
    assert row["status"] == "failed" and row["attempts"] == 1
    assert vsf["status"] == "failed"
    message = vsf["last_error"]["message"]
    assert f"{vendor.url}/embeddings" in message and "embedding" in message
    assert "sk-vendor-secret" not in message
    assert len(vendor.calls) == 1  # not retried


# --- idempotency ----------------------------------------------------------------------


def test_idempotent_create_replays_and_conflicts(svc: Service) -> None:
    with svc.http() as http, svc.db() as db:
        before = db.execute("SELECT count(*) AS n FROM vector_stores").fetchone()["n"]
        h = {"Idempotency-Key": "vs-create-1"}
        first = http.post("/v1/vector_stores", json={"name": "idem"}, headers=h)
        again = http.post("/v1/vector_stores", json={"name": "idem"}, headers=h)
        other = http.post("/v1/vector_stores", json={"name": "other"}, headers=h)
        after = db.execute("SELECT count(*) AS n FROM vector_stores").fetchone()["n"]
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert other.status_code == 409
    assert other.json()["error"]["param"] == "Idempotency-Key"
    assert after == before + 1


def test_concurrent_duplicates_create_once(svc: Service) -> None:
    results: list[Any] = []

    def post() -> None:
        with svc.http() as http:
            results.append(
                http.post(
                    "/v1/vector_stores", json={"name": "race"}, headers={"Idempotency-Key": "race"}
                )
            )

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results} == {200}
    assert len({r.json()["id"] for r in results}) == 1
    with svc.db() as db:
        assert (
            db.execute("SELECT count(*) AS n FROM vector_stores WHERE name = 'race'").fetchone()[
                "n"
            ]
            == 1
        )


def test_idempotent_upload_keeps_one_file_and_one_blob(svc: Service, store: str) -> None:
    blobs = svc.data_dir / "blobs"
    count_blobs = lambda: sum(1 for p in blobs.rglob("*") if p.is_file())  # noqa: E731
    data = generated_text(3, seed=42).encode()
    with svc.http() as http, svc.db() as db:
        n_files = db.execute("SELECT count(*) AS n FROM files").fetchone()["n"]
        first = upload(http, data, "same.txt", **{"Idempotency-Key": "up-1"})
        n_blobs = count_blobs()
        again = upload(http, data, "same.txt", **{"Idempotency-Key": "up-1"})
        other = upload(http, data + b"!", "same.txt", **{"Idempotency-Key": "up-1"})
        assert first.status_code == again.status_code == 200, again.text
        assert first.json() == again.json()
        assert other.status_code == 409 and other.json()["error"]["param"] == "Idempotency-Key"
        assert db.execute("SELECT count(*) AS n FROM files").fetchone()["n"] == n_files + 1
        assert count_blobs() == n_blobs  # the duplicates' bytes were deleted
        # Attaching with a key twice: one job.
        fid = first.json()["id"]
        h = {"Idempotency-Key": "attach-1"}
        a1 = http.post(f"/v1/vector_stores/{store}/files", json={"file_id": fid}, headers=h)
        a2 = http.post(f"/v1/vector_stores/{store}/files", json={"file_id": fid}, headers=h)
        assert a1.status_code == a2.status_code == 200 and a1.json() == a2.json()
        b1 = http.post(
            f"/v1/vector_stores/{store}/file_batches", json={"file_ids": [fid]}, headers=h
        )
        assert b1.status_code == 409  # same key, other endpoint
        jobs = db.execute("SELECT count(*) AS n FROM jobs WHERE file_id = %s", [fid]).fetchone()
        assert jobs["n"] == 1
    wait_job(svc, a1.json()["job_id"])


# --- cache ----------------------------------------------------------------------------


def test_unchanged_file_is_never_embedded_twice(svc: Service, store: str) -> None:
    text = generated_text(30, seed=7)
    with svc.http() as http:
        file_id, job_id = ingest_text(http, store, text, "cached.txt")
        first = wait_job(svc, job_id)
        assert first["status"] == "succeeded" and first["embeddings_computed"] > 0
        other = http.post("/v1/vector_stores", json={"name": "second"}).json()["id"]
        same_file = http.post(f"/v1/vector_stores/{other}/files", json={"file_id": file_id})
        _, copy_job = ingest_text(http, store, text, "cached-copy.txt")  # same bytes again
        rows = [wait_job(svc, same_file.json()["job_id"]), wait_job(svc, copy_job)]
    for row in rows:
        assert row["status"] == "succeeded"
        assert row["embeddings_computed"] == 0
        assert row["embeddings_cached"] == first["progress_total"]
        # Same bytes, chunking and model: the chunks were copied in one step, not parsed.
        assert row["checkpoints_reused"] == 1 and row["checkpoints_embedded"] == 0
        assert "parsing" not in row["stage_durations"]


# --- cancel and retry -----------------------------------------------------------------


def test_cancel_running_job_then_retry(svc: Service, store: str, vendor: FakeVendor) -> None:
    vendor.delay_s = 0.3
    with svc.http() as http:
        file_id, job_id = ingest_text(http, store, generated_text(120, seed=11), "cancel.txt")
        wait_job(svc, job_id, lambda j: j["status"] == "running" and j["progress_done"] > 0)
        resp = http.post(f"/v1/jobs/{job_id}/cancel")
        assert resp.status_code == 200
        row = wait_job(svc, job_id, timeout_s=10)
        assert row["status"] == "cancelled"
        assert row["progress_done"] < row["progress_total"]
        with svc.db() as db:
            n = db.execute(
                "SELECT count(*) AS n FROM chunks WHERE file_id = %s", [file_id]
            ).fetchone()["n"]
        assert n == 0
        hits = http.post(
            f"/v1/vector_stores/{store}/search",
            json={"query": "Paragraph of document 11", "max_num_results": 50},
        ).json()["data"]
        assert file_id not in {h["file_id"] for h in hits}
        vendor.delay_s = 0.0
        retried = http.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status_code == 200, retried.text
        new = wait_job(svc, retried.json()["id"])
        assert new["status"] == "succeeded"
        vsf = http.get(f"/v1/vector_stores/{store}/files/{file_id}").json()
        assert vsf["status"] == "completed"


# --- worker stop and death ------------------------------------------------------------


def test_sigterm_releases_the_job_at_once(svc: Service, store: str, vendor: FakeVendor) -> None:
    vendor.delay_s = 0.3
    with svc.http() as http:
        _, job_id = ingest_text(http, store, generated_text(80, seed=12), "sigterm.txt")
    row = wait_job(svc, job_id, lambda j: j["status"] == "running" and j["progress_done"] > 0)
    proc = worker_of(svc, row)
    proc.send_signal(signal.SIGTERM)
    # Released by the worker itself, well before the sweeper's stall timeout (6 s) could act.
    released = wait_job(svc, job_id, lambda j: j["status"] != "running", timeout_s=4)
    assert released["status"] == "queued"
    assert _outcomes(released)[-1] == "released: worker shutting down"
    assert proc.wait(timeout=20) == 0
    vendor.delay_s = 0.0
    svc.start_worker()
    done = wait_job(svc, job_id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert done["attempt_log"][0]["worker"] != done["attempt_log"][-1]["worker"]
    assert done["embeddings_computed"] == done["progress_total"]


def test_kill9_resumes_at_the_first_unembedded_batch(
    svc: Service, store: str, vendor: FakeVendor
) -> None:
    _ensure_worker(svc)
    vendor.delay_s = 0.1
    with svc.http() as http:
        _, job_id = ingest_text(http, store, generated_text(200, seed=13), "resume.txt")
    row = wait_job(svc, job_id, lambda j: j["status"] == "running" and j["progress_done"] >= 40)
    kill9(worker_of(svc, row))
    vendor.delay_s = 0.0
    svc.start_worker()
    done = wait_job(svc, job_id)
    total = done["progress_total"]
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert total >= 30 * BATCH
    assert "released: worker lost (no heartbeat)" in _outcomes(done)
    # Each checkpoint embedded once over both attempts; no chunk computed twice.
    assert done["checkpoints_embedded"] == math.ceil(total / BATCH)
    assert done["embeddings_computed"] == total
    with svc.db() as db:
        n = db.execute(
            "SELECT count(*) AS n, count(DISTINCT chunk_index) AS d FROM chunks "
            "WHERE file_id = %s AND embedding IS NOT NULL",
            [done["file_id"]],
        ).fetchone()
    assert n == {"n": total, "d": total}


def test_poison_file_fails_after_max_attempts(svc: Service, store: str, vendor: FakeVendor) -> None:
    """No honest file kills a worker every time (the parser runs in a sandbox), so the test
    kills the worker each time it is seen running the file."""
    _ensure_worker(svc)
    vendor.delay_s = 0.5
    with svc.http() as http:
        file_id, job_id = ingest_text(http, store, generated_text(60, seed=14), "poison.txt")
    for attempt in range(1, 4):
        row = wait_job(
            svc, job_id, lambda j, a=attempt: j["status"] == "running" and j["attempts"] == a
        )
        kill9(worker_of(svc, row))
        svc.start_worker()
    done = wait_job(svc, job_id)
    assert done["status"] == "failed"
    assert "stopped 3 times" in done["error"]["message"]
    assert done["attempts"] == 3
    with svc.http() as http:
        vsf = http.get(f"/v1/vector_stores/{store}/files/{file_id}").json()
    assert vsf["status"] == "failed" and "stopped 3 times" in vsf["last_error"]["message"]
    wait_next_sweep(svc)  # one more sweep: it must not pick the job up again
    assert job(svc, job_id)["status"] == "failed"
