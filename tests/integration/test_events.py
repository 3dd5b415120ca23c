"""Job events over SSE: live delivery, resume without loss or repeats, stream ends, scoping."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from support.service import Service
from support.sse import Frame, events, frames

SMALL_CHUNKS = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
}
FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def service(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # Small embedding batches make several progress events per file; a short keep-alive
    # interval lets the keep-alive test finish quickly; every stage is written as it begins
    # (by default one that comes and goes within 250 ms is only timed: test_stage_writes.py).
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("svc")),
        extra_env={
            "PREPSHELF_EMBED_CHECKPOINT_ROWS": "4",
            "PREPSHELF_EVENTS_KEEPALIVE_S": "0.5",
            "PREPSHELF_STAGE_WRITE_DELAY_MS": "0",
        },
    ) as svc:
        yield svc


def _text(topic: str, sentences: int = 120) -> str:
    return " ".join(
        f"Sentence {i} about {topic}: the quick brown fox jumps over the lazy dog near the river."
        for i in range(sentences)
    )


def _upload(service: Service, name: str, text: str) -> str:
    client = service.openai()
    return str(client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id)


def _store(service: Service) -> str:
    return str(service.openai().vector_stores.create(name="events").id)


def _attach(service: Service, store_id: str, file_id: str) -> str:
    with service.http() as http:
        body = http.post(
            f"/v1/vector_stores/{store_id}/files",
            json={"file_id": file_id, "chunking_strategy": SMALL_CHUNKS},
        ).json()
    return str(body["job_id"])


def _stream(http: httpx.Client, url: str, **headers: str) -> Any:
    return http.stream("GET", url, headers=headers, timeout=httpx.Timeout(60, read=30))


def _db_event_ids(service: Service, job_id: str) -> list[int]:
    with service.db() as db:
        rows = db.execute(
            "SELECT id FROM job_events WHERE job_id = %s ORDER BY txid, id", [job_id]
        ).fetchall()
    return [r["id"] for r in rows]


def test_store_stream_delivers_live_events(service: Service) -> None:
    store_id = _store(service)
    file_id = _upload(service, "live.txt", _text("live events"))
    seen: list[Frame] = []
    with service.http() as http, _stream(http, f"/v1/events?vector_store_id={store_id}") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        # The stream is open before the job exists: whatever arrives, arrives live.
        job_id = _attach(service, store_id, file_id)
        for frame in events(resp):
            seen.append(frame)
            if frame.data and frame.data["status"] in FINAL:
                break
    types = [f.event for f in seen]
    assert types[0] == "job.created" and types[-1] == "job.succeeded", types
    assert "job.running" in types and "job.progress" in types
    stages = [f.data["stage"] for f in seen if f.event == "job.stage" and f.data]
    assert stages == ["parsing", "chunking", "embedding", "indexing"]
    progress = [f.data["progress"] for f in seen if f.event == "job.progress" and f.data]
    assert len(progress) >= 3  # 4 chunks per embedding batch
    assert progress[-1]["done"] == progress[-1]["total"]
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
    for frame in seen:
        assert frame.data is not None
        assert frame.data["job_id"] == job_id and frame.data["id"] == frame.id
        assert {"status", "stage", "progress", "attempts", "error"} <= set(frame.data)
    assert [f.id for f in seen] == _db_event_ids(service, job_id)


def test_job_stream_resumes_without_gaps_or_repeats(service: Service) -> None:
    store_id = _store(service)
    file_id = _upload(service, "resume.txt", _text("resuming", 200))
    job_id = _attach(service, store_id, file_id)
    url = f"/v1/jobs/{job_id}/events"
    with service.http() as http:
        first: list[Frame] = []
        with _stream(http, url) as resp:
            for frame in events(resp):
                first.append(frame)
                if len(first) == 3:
                    break  # the client goes away mid-job
        second: list[Frame] = []
        with _stream(http, url, **{"Last-Event-ID": str(first[-1].id)}) as resp:
            second = list(events(resp))  # ends by itself when the job is final
        # The query parameter resumes the same way (for clients that cannot set headers).
        with _stream(http, f"{url}?last_event_id={first[1].id}") as resp:
            third = list(events(resp))
    ids = [f.id for f in first + second]
    assert len(ids) == len(set(ids))
    assert ids == _db_event_ids(service, job_id)
    assert [f.id for f in third] == ids[2:]
    assert second[-1].event == "job.succeeded"


def test_job_stream_of_a_finished_job_replays_and_ends(service: Service) -> None:
    store_id = _store(service)
    file_id = _upload(service, "done.txt", _text("finished", 10))
    job_id = _attach(service, store_id, file_id)
    with service.http() as http:
        with _stream(http, f"/v1/jobs/{job_id}/events") as resp:
            live = list(events(resp))
        job = http.get(f"/v1/jobs/{job_id}").json()
        with _stream(http, f"/v1/jobs/{job_id}/events") as resp:
            replay = list(events(resp))
    assert job["status"] == "succeeded"
    assert [f.id for f in replay] == [f.id for f in live]
    assert replay[-1].data and replay[-1].data["status"] == "succeeded"


def test_batch_stream_ends_when_batch_is_done(service: Service) -> None:
    store_id = _store(service)
    good = [_upload(service, f"good{i}.txt", _text(f"batch {i}", 20)) for i in range(2)]
    bad = _upload(service, "blank.txt", "   \n\t  \n")
    with service.http() as http:
        batch = http.post(
            f"/v1/vector_stores/{store_id}/file_batches", json={"file_ids": [*good, bad]}
        ).json()
        with _stream(http, f"/v1/events?batch_id={batch['id']}") as resp:
            got = list(events(resp))
        after = http.get(f"/v1/vector_stores/{store_id}/file_batches/{batch['id']}").json()
    assert after["file_counts"]["in_progress"] == 0
    final: dict[str, dict[str, Any]] = {}
    for frame in got:
        assert frame.data is not None
        if frame.data["status"] in FINAL:
            final[frame.data["file_id"]] = frame.data
    assert set(final) == {*good, bad}
    # Each event names its job's parent by kind: the file batch, and no /v1/batches batch.
    assert all((f["file_batch_id"], f["batch_id"]) == (batch["id"], None) for f in final.values())
    assert all(final[f]["status"] == "succeeded" for f in good)
    failure = final[bad]
    assert failure["status"] == "failed"
    assert failure["error"]["stage"] in ("parsing", "chunking")
    assert "blank.txt" in failure["error"]["message"]


def test_keep_alive_comments_on_an_idle_stream(service: Service) -> None:
    store_id = _store(service)
    with service.http() as http, _stream(http, f"/v1/events?vector_store_id={store_id}") as resp:
        for frame in frames(resp):
            if "keep-alive" in frame.comments:
                break
        else:
            pytest.fail("the idle stream ended without a keep-alive comment")


def test_events_survive_a_lost_listen_connection(service: Service) -> None:
    store_id = _store(service)
    with service.db() as db:
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE 'LISTEN prepshelf_events%'"
        ).fetchall()
    assert killed and all(r["ok"] for r in killed)
    file_id = _upload(service, "after-loss.txt", _text("reconnect", 10))
    with service.http() as http, _stream(http, f"/v1/events?vector_store_id={store_id}") as resp:
        job_id = _attach(service, store_id, file_id)
        for frame in events(resp):
            if frame.data and frame.data["status"] == "succeeded":
                break
        else:
            pytest.fail("the stream ended before the job succeeded")
    assert frame.data and frame.data["job_id"] == job_id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the hub is back on its own
        with service.db() as db:
            if db.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND query ILIKE 'LISTEN prepshelf_events%'"
            ).fetchone():
                break
        time.sleep(0.2)
    else:
        pytest.fail("the events hub did not reconnect its LISTEN connection")


def test_unknown_and_foreign_ids_are_404(service: Service) -> None:
    with service.db() as db:
        db.execute(
            "INSERT INTO jobs (id, project_id, kind, status) "
            "VALUES ('job_foreign', 'another-project', 'ingest_file', 'queued')"
        )
    with service.http() as http:
        for url in (
            "/v1/jobs/job_nope/events",
            "/v1/jobs/job_foreign/events",
            "/v1/events?vector_store_id=vs_nope",
            "/v1/events?batch_id=vsfb_nope",
        ):
            resp = http.get(url)
            assert resp.status_code == 404, url
            assert resp.json()["error"]["type"] == "invalid_request_error"
        assert http.get("/v1/events").status_code == 400
        assert http.get("/v1/jobs/job_nope/events", headers={"Last-Event-ID": "x"}).status_code in (
            400,
            404,
        )
        assert httpx.get(f"http://127.0.0.1:{service.port}/v1/events?batch_id=x").status_code == 401


def test_jobs_api_filters_and_links(service: Service) -> None:
    store_id = _store(service)
    since = int(time.time())
    file_id = _upload(service, "links.txt", _text("links", 5))
    job_id = _attach(service, store_id, file_id)
    with service.http() as http:
        with _stream(http, f"/v1/jobs/{job_id}/events") as resp:
            list(events(resp))
        job = http.get(f"/v1/jobs/{job_id}").json()
        links = job["links"]
        assert http.get(links["file"]).json()["id"] == file_id
        assert http.get(links["vector_store"]).json()["id"] == store_id
        assert http.get(links["vector_store_file"]).json()["job_id"] == job_id
        assert links["batch"] is None and links["file_batch"] is None
        assert (job["file_batch_id"], job["batch_id"]) == (None, None)
        assert job["stage_durations"].keys() >= {"parsing", "embedding"}
        assert job["attempt_log"][-1]["outcome"] == "succeeded"
        listed = http.get(
            "/v1/jobs", params={"created_after": since, "vector_store_id": store_id}
        ).json()
        assert [j["id"] for j in listed["data"]] == [job_id]
        later = http.get("/v1/jobs", params={"created_after": int(time.time()) + 60}).json()
        assert later["data"] == []


def test_prune_drops_only_old_events(service: Service) -> None:
    from prepshelf.store.events import prune_events

    with service.db() as db:
        db.execute(
            "INSERT INTO job_events (project_id, job_id, type, data, created_at) VALUES "
            "('default', 'job_old', 'job.created', '{}', now() - interval '8 days')"
        )
        before = db.execute("SELECT count(*) AS n FROM job_events").fetchone()

    async def prune() -> int:
        async with await psycopg.AsyncConnection.connect(
            service.database_url, autocommit=True
        ) as conn:
            return await prune_events(conn, older_than_s=7 * 24 * 3600)

    assert asyncio.run(prune()) == 1
    with service.db() as db:
        after = db.execute("SELECT count(*) AS n FROM job_events").fetchone()
    assert before and after and after["n"] == before["n"] - 1
