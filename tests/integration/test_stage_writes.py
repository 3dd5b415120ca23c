"""An ingest job's stages are written lazily (jobs/stage_clock.py): a stage shows once it has
lasted `stage_write_delay_ms` or with the job's next write, and its seconds are recorded
either way. Against a real database (the clock alone) and through the running service."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prepshelf.domain.jobs import JobAttempt
from prepshelf.jobs.stage_clock import StageClock
from prepshelf.store import jobs as jobs_db
from prepshelf.store.db import open_pool
from support.job_rows import running_ingest_job
from support.postgres import sql
from support.service import Service
from support.sse import events

STAGES = {"parsing", "chunking", "embedding", "indexing"}


@pytest.fixture(scope="module")
def service(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # A delay no stage of a small file reaches even on a loaded machine: the job's stages
    # are then only ever carried by its other writes (the default is 250 ms).
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("svc")),
        extra_env={"PREPSHELF_STAGE_WRITE_DELAY_MS": "600000"},
    ) as svc:
        yield svc


def _running_job(database_url: str, name: str) -> str:
    return running_ingest_job(database_url, name)


def _row(database_url: str, job_id: str) -> dict[str, Any]:
    return sql(database_url, "SELECT * FROM jobs WHERE id = %s", [job_id])[0]


def _stage_events(database_url: str, job_id: str) -> list[str]:
    rows = sql(
        database_url,
        "SELECT data->>'stage' AS stage FROM job_events WHERE job_id = %s AND type = 'job.stage'"
        " ORDER BY id",
        [job_id],
    )
    return [r["stage"] for r in rows]


def test_a_lasting_stage_is_written_a_fleeting_one_only_timed(database_url: str) -> None:
    job_id = _running_job(database_url, "clock")

    async def main() -> float:
        pool = await open_pool(database_url, max_size=2)
        began = time.monotonic()
        try:
            clock = StageClock(pool, job_id, None, delay_s=0.05)
            await clock.enter("parsing")
            assert _row(database_url, job_id)["stage"] is None  # not yet: it may not last
            for _ in range(500):  # the timer writes it once it has lasted the delay
                if _row(database_url, job_id)["stage"] == "parsing":
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("a lasting stage was never written")
            await clock.enter("chunking")  # these two come and go before any timer is due
            await clock.enter("embedding", progress_total=3, progress_unit="chunks")
            await clock.enter("indexing")
            job = JobAttempt(job_id, 1, "w")
            async with clock.finishing() as times, pool.connection() as conn:
                finished = await jobs_db.finish_succeeded(conn, job=job, usage_bytes=7, times=times)
            await clock.settle()
            await asyncio.sleep(0.1)  # a timer that was due would have written by now
            assert finished is not None and finished.status == "succeeded"
        finally:
            await pool.close()
        return time.monotonic() - began

    elapsed = asyncio.run(main())
    row = _row(database_url, job_id)
    assert (row["status"], row["stage"], row["stage_started_at"]) == ("succeeded", None, None)
    assert _stage_events(database_url, job_id) == ["parsing"]  # only the stage that lasted
    durations = row["stage_durations"]
    assert durations.keys() == STAGES  # every stage timed, written or not
    assert all(v >= 0 for v in durations.values())
    assert sum(durations.values()) <= elapsed + 0.01  # each second counted once


def test_a_failure_after_unwritten_stages_keeps_their_times(database_url: str) -> None:
    """A write the clock does not make (here a failure) is preceded by settle(): the row
    shows the stage the attempt was in, and closes it from a start the clock measured."""
    job_id = _running_job(database_url, "fails")

    async def main() -> None:
        pool = await open_pool(database_url, max_size=2)
        try:
            clock = StageClock(pool, job_id, None, delay_s=60)
            await clock.enter("parsing")
            await clock.enter("chunking")
            await clock.settle()
            assert _row(database_url, job_id)["stage"] == "chunking"
            async with pool.connection() as conn:
                error = {"code": "invalid_file", "message": "fails.txt: chunking: x"}
                await jobs_db.finish_failed(conn, job=JobAttempt(job_id, 1, "w"), error=error)
        finally:
            await pool.close()

    asyncio.run(main())
    row = _row(database_url, job_id)
    assert row["status"] == "failed"
    assert row["stage_durations"].keys() == {"parsing", "chunking"}


def test_a_small_file_shows_running_then_succeeded_with_every_stage_timed(
    service: Service,
) -> None:
    """Through the service: a one-paragraph file's job tells its subscribers created,
    running and its success, which carries its one checkpoint's progress; no event for the
    stages that came and went in milliseconds, but their seconds are all on the job."""
    client = service.openai()
    store = client.vector_stores.create(name="stage-writes")
    text = "One short paragraph about harbour tides and the cargo they carry."
    uploaded = client.files.create(file=("p.txt", io.BytesIO(text.encode())), purpose="assistants")
    with service.http() as http:
        with http.stream("GET", f"/v1/events?vector_store_id={store.id}", timeout=60) as stream:
            attached = http.post(
                f"/v1/vector_stores/{store.id}/files", json={"file_id": uploaded.id}
            ).json()
            seen = []
            for frame in events(stream):
                seen.append(frame)
                if frame.data and frame.data["status"] in ("succeeded", "failed", "cancelled"):
                    break
        job = http.get(f"/v1/jobs/{attached['job_id']}").json()
    kinds = [f.event for f in seen]
    assert kinds == ["job.created", "job.running", "job.succeeded"], kinds
    # The checkpoint and the finish are one row update in one commit: one event.
    succeeded = seen[2].data
    assert succeeded is not None and succeeded["progress"] == {
        "done": 1,
        "total": 1,
        "unit": "chunks",
    }
    assert job["status"] == "succeeded" and job["progress"]["done"] == job["progress"]["total"]
    assert job["stage_durations"].keys() >= STAGES


def test_the_one_commit_finish_completes_the_store_file_with_its_usage(
    service: Service,
) -> None:
    """A file of one checkpoint is stored, embedded and finished in one commit: its store
    file is completed with the bytes of its chunks' text, as the long path counts them."""
    client = service.openai()
    store = client.vector_stores.create(name="stage-writes-usage")
    text = "Usage is counted in bytes of the chunks' text: héllo wörld, ünïcode."
    uploaded = client.files.create(file=("u.txt", io.BytesIO(text.encode())), purpose="assistants")
    vsf = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=uploaded.id)
    assert vsf.status == "completed" and vsf.last_error is None
    with service.db() as db:
        stored = db.execute(
            """SELECT sum(octet_length(text)) AS n, count(*) FILTER (WHERE embedding IS NULL)
                      AS unembedded
               FROM chunks WHERE vector_store_id = %s AND file_id = %s""",
            [store.id, uploaded.id],
        ).fetchone()
    assert stored is not None and stored["unembedded"] == 0
    assert vsf.usage_bytes == stored["n"] > 0
