"""Recordings added to a vector store are transcribed through an upstream (a fake
OpenAI-compatible server on loopback), segment by segment, and found by search with where
they are in the recording; refusals and outages of the upstream say what happened."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_upstream import FakeUpstream, Rule
from support.media import TRANSCRIBER as MODEL
from support.media import recording, transcription_config
from support.service import Service
from support.tenants import ok


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=[MODEL]) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def svc(
    database_url: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("transcription")),
        extra_env={
            "PREPSHELF_UPSTREAMS": json.dumps(transcription_config(fake.url)),
            "PREPSHELF_MEDIA_SEGMENT_S": "30",
            "PREPSHELF_RETRY_BASE_DELAY_S": "0.5",
        },
    ) as service:
        yield service


@pytest.fixture(autouse=True)
def _clean(fake: FakeUpstream) -> None:
    fake.reset()


def _add(svc: Service, name: str, data: bytes, **create: Any) -> tuple[str, Any]:
    client = svc.openai()
    store = client.vector_stores.create(name=f"meetings {name}")
    uploaded = client.files.create(file=(name, data), purpose="assistants")
    vsf = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=uploaded.id, poll_interval_ms=200, **create
    )
    return store.id, vsf


def _job(svc: Service, store_id: str, file_id: str) -> dict[str, Any]:
    with svc.http() as http:
        jobs = ok(http.get("/v1/jobs", params={"vector_store_id": store_id}))["data"]
        (job,) = [j for j in jobs if j.get("file_id") == file_id]
        return dict(ok(http.get(f"/v1/jobs/{job['id']}")))


def test_a_recording_is_transcribed_segment_by_segment_and_found_by_time(
    svc: Service, fake: FakeUpstream, tmp_path: Path
) -> None:
    audio = recording(tmp_path / "standup.mp3", 120)
    fake.add(Rule("status", status=500, path="/v1/audio/transcriptions", times=1))
    small = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    store_id, vsf = _add(svc, "standup.mp3", audio, chunking_strategy=small)
    assert vsf.status == "completed", vsf.last_error
    job = _job(svc, store_id, vsf.id)
    transcript = job["result"]["transcript"]
    assert (transcript["model"], transcript["segments"]) == (MODEL, 4)
    assert transcript["duration_s"] == pytest.approx(120, abs=0.2)  # mp3 frames pad a little
    assert "transcribing" in job["stage_durations"]
    calls = [r for r in fake.records() if r.path == "/v1/audio/transcriptions"]
    assert [r.status for r in calls] == [500] + [200] * 4  # the 500 was retried
    with svc.db() as db:
        rows = db.execute(
            "SELECT text, attributes FROM chunks WHERE vector_store_id = %s ORDER BY chunk_index",
            [store_id],
        ).fetchall()
    assert rows and all(r["attributes"]["start_s"] < r["attributes"]["end_s"] for r in rows)
    assert rows[0]["attributes"]["start_s"] == 0
    assert rows[-1]["attributes"]["end_s"] == pytest.approx(transcript["duration_s"], abs=0.2)
    assert len(rows) >= 2  # 24 pieces of 5 s, chunks of 100 tokens
    # A search for the last chunk's words finds it, and says where in the recording it is.
    last = rows[-1]
    hits = svc.openai().vector_stores.search(vector_store_id=store_id, query=last["text"])
    top = next(iter(hits))
    assert top.filename == "standup.mp3"
    assert top.attributes["start_s"] == last["attributes"]["start_s"] > 0
    assert top.attributes["end_s"] == last["attributes"]["end_s"]


def test_a_refused_recording_fails_with_the_upstreams_reason(
    svc: Service, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.add(Rule("status", status=400, path="/v1/audio/transcriptions", times=None))
    _, vsf = _add(svc, "refused.mp3", recording(tmp_path / "r.mp3", 4, 600))
    assert vsf.status == "failed"
    assert vsf.last_error.code == "invalid_file"
    assert vsf.last_error.message.startswith(
        f"refused.mp3: transcribing: segment 1 of 1: the transcription model `{MODEL}` refused it: "
    )


def test_an_upstream_that_stays_down_fails_the_file_after_its_attempts(
    svc: Service, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.add(Rule("status", status=503, path="/v1/audio/transcriptions", times=None))
    store_id, vsf = _add(svc, "down.mp3", recording(tmp_path / "d.mp3", 3, 700))
    assert vsf.status == "failed"
    assert "segment 1 of 1" in vsf.last_error.message
    assert "gave up after 5 attempts" in vsf.last_error.message
    assert _job(svc, store_id, vsf.id)["attempts"] == 5


def test_video_without_sound_is_refused_saying_so(svc: Service, tmp_path: Path) -> None:
    video = tmp_path / "mute.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
            "testsrc=duration=3:size=64x48:rate=10", "-c:v", "libx264", "-f", "mp4", str(video),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    _, vsf = _add(svc, "mute.mp4", video.read_bytes())
    assert vsf.status == "failed" and "no audio stream" in vsf.last_error.message
