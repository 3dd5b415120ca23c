"""Workers SIGKILLed while their requests are in flight at an upstream.

A chat batch: another worker finishes it, the output holds every custom_id exactly once, and
only the requests in flight at the kill were ever sent twice. A recording being transcribed:
another worker resumes at its first segment without an answer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.helpers import job, kill9, wait_job, worker_of
from support.fake_upstream import FakeUpstream, max_in_flight
from support.media import recording, transcription_config
from support.service import FAST_RECOVERY, Service
from support.upstream_batches import chat_line, create, lines_of, sends, upstream_config, wait

MAX_CONCURRENT = 4
LINES = 60


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=["llama-fake", "whisper-fake"]) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def svc(
    database_url: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    config = upstream_config(fake.url, rpm=6000, max_concurrent=MAX_CONCURRENT)
    config["upstreams"].update(transcription_config(fake.url)["upstreams"])
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("upstream-kill")),
        workers=1,
        extra_env={
            "PREPSHELF_UPSTREAMS": json.dumps(config),
            "PREPSHELF_BATCH_SLICE_LINES": "20",
            "PREPSHELF_UPSTREAM_POLL_S": "0.1",
            **FAST_RECOVERY,
            "PREPSHELF_MEDIA_SEGMENT_S": "10",
        },
    ) as service:
        yield service


def test_kill_9_mid_slice_loses_and_duplicates_no_line(svc: Service, fake: FakeUpstream) -> None:
    fake.delay_s = 0.4
    client = svc.openai()
    lines = [chat_line(i, "kill") for i in range(LINES)]
    batch = create(client, lines)
    # Mid-slice: some answers of the first slice kept, more requests in flight.
    running = wait_job(
        svc,
        batch.job_id,
        until=lambda j: j["status"] == "running" and 6 <= j["progress_done"] < 20,
        timeout_s=120,
    )
    kill9(worker_of(svc, running))
    svc.start_worker()
    final = wait(client, batch.id, timeout_s=300)
    assert final.status == "completed", (final, svc.logs())
    out = lines_of(client, final.output_file_id)
    assert Counter(o["custom_id"] for o in out) == Counter(f"kill-{i}" for i in range(LINES))
    assert final.request_counts.completed == LINES and final.request_counts.failed == 0
    counts = Counter(sends(fake, line) for line in lines)
    assert set(counts) <= {1, 2}, counts
    assert counts[2] <= MAX_CONCURRENT  # only requests in flight at the kill went twice
    assert max_in_flight(fake.records()) <= MAX_CONCURRENT
    row = job(svc, batch.job_id)
    assert row["attempts"] == 2 and "worker lost" in str(row["attempt_log"])


def test_kill_9_mid_recording_resumes_at_the_next_segment(
    svc: Service, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.reset()
    fake.delay_s = 1.0
    audio = recording(tmp_path / "meeting.mp3", 60)  # six segments of 10 s
    client = svc.openai()
    store = client.vector_stores.create(name="meetings")
    uploaded = client.files.create(file=("meeting.mp3", audio), purpose="assistants")
    vsf = client.vector_stores.files.create(vector_store_id=store.id, file_id=uploaded.id)
    with svc.db() as db:
        (row,) = db.execute(
            "SELECT id FROM jobs WHERE vector_store_id = %s AND file_id = %s",
            [store.id, uploaded.id],
        ).fetchall()
    running = wait_job(
        svc,
        row["id"],
        until=lambda j: j["stage"] == "transcribing" and j["progress_done"] >= 2,
        timeout_s=120,
    )
    kill9(worker_of(svc, running))
    svc.start_worker()
    final = wait_job(svc, row["id"], until=lambda j: j["status"] in ("succeeded", "failed"))
    assert final["status"] == "succeeded", (final, svc.logs())
    assert final["result"]["transcript"]["segments"] == 6
    calls = [r for r in fake.records() if r.path == "/v1/audio/transcriptions"]
    assert 6 <= len(calls) <= 6 + 1  # at most the segment in flight at the kill, twice
    assert client.vector_stores.files.retrieve(vsf.id, vector_store_id=store.id).status == (
        "completed"
    )
