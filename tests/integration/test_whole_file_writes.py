"""Files embedded at once finish in groups (jobs/whole_file_writes.py): the writes that
arrive while one group's transaction runs share the next; a cancelled file is left out; a
group that fails is written again file by file, so one file's fault fails only that file."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import psycopg
import pytest

from prepshelf.domain.jobs import IngestJob, StageTimes, WholeFileCheckpoint
from prepshelf.jobs import whole_file_writes
from prepshelf.jobs.whole_file_writes import WholeFileWrite, WholeFileWriter
from prepshelf.store.chunks import FileChunks
from prepshelf.store.db import open_pool
from prepshelf.store.job_readouts import FinishedTimes
from prepshelf.store.jobs import WholeFileFinish
from support.job_rows import running_ingest_job
from support.postgres import sql

STORE = "vs_groups"


def _write(job_id: str, text: str) -> WholeFileWrite:
    file_id = job_id.replace("job-", "file-")
    job = IngestJob(
        id=job_id,
        project_id="proj-clock",
        vector_store_id=STORE,
        file_id=file_id,
        file_batch_id=None,
        attempts=1,
        worker="w",
        stage=None,
        chunks_stored=False,
    )
    digest = text.encode().ljust(32, b".")[:32]
    vector = np.full(384, 1 / np.sqrt(384), dtype=np.float32)
    return WholeFileWrite(
        finish=WholeFileFinish(
            job=job,
            checkpoint=WholeFileCheckpoint(chunks=1, computed=1, timings={"embedding.model": 0.2}),
            usage_bytes=len(text.encode()),
            times=StageTimes(stage=None, started_ago_s=0.0, closed={"indexing": 0.01}),
            archive_member=False,
        ),
        chunks=FileChunks(
            store_id=STORE,
            file_id=file_id,
            project_id="proj-clock",
            model="m",
            chunks=[(0, text, digest, 5, None, vector)],
            new_digests={digest},
        ),
        result=None,
    )


def _jobs(database_url: str, prefix: str, count: int) -> list[str]:
    return [running_ingest_job(database_url, f"{prefix}-{i}", store_id=STORE) for i in range(count)]


def _write_all(database_url: str, writes: list[WholeFileWrite]) -> list[Any]:
    """Every write sent at once to one writer; each one's outcome (times, None or error)."""

    async def main() -> list[Any]:
        pool = await open_pool(database_url, max_size=2)
        try:
            writer = WholeFileWriter(pool)
            return await asyncio.gather(*(writer.write(w) for w in writes), return_exceptions=True)
        finally:
            await pool.close()

    return asyncio.run(main())


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every transaction the writers run."""
    sizes: list[int] = []
    real = whole_file_writes.write_whole_files

    async def counting(conn: Any, writes: list[WholeFileWrite]) -> dict[str, FinishedTimes]:
        sizes.append(len(writes))
        return await real(conn, writes)

    monkeypatch.setattr(whole_file_writes, "write_whole_files", counting)
    return sizes


def _succeeded(database_url: str, job_ids: list[str]) -> list[dict[str, Any]]:
    return sql(
        database_url,
        """SELECT j.id, j.status, j.progress_done, j.progress_total, j.embeddings_computed,
                  j.checkpoints_embedded, j.stage_durations, v.status AS file_status,
                  v.usage_bytes, (SELECT count(*) FROM chunks c WHERE c.file_id = j.file_id
                                  AND c.embedding IS NOT NULL) AS chunks
           FROM jobs j JOIN vector_store_files v ON v.job_id = j.id
           WHERE j.id = ANY(%s) ORDER BY j.id""",
        [job_ids],
    )


def test_writes_sent_together_share_one_transaction(database_url: str, groups: list[int]) -> None:
    job_ids = _jobs(database_url, "together", 6)
    outcomes = _write_all(database_url, [_write(j, f"paragraph {j}") for j in job_ids])
    assert all(isinstance(o, FinishedTimes) and o.status == "succeeded" for o in outcomes)
    assert sum(groups) == 6 and len(groups) < 6, groups
    for row in _succeeded(database_url, job_ids):
        assert (row["status"], row["file_status"], row["chunks"]) == ("succeeded", "completed", 1)
        assert (row["progress_done"], row["progress_total"]) == (1, 1)
        assert (row["embeddings_computed"], row["checkpoints_embedded"]) == (1, 1)
        assert row["stage_durations"] == {"indexing": 0.01, "embedding.model": 0.2}
        assert row["usage_bytes"] == len(f"paragraph {row['id']}".encode())
    events = sql(
        database_url,
        "SELECT type, count(*) AS n FROM job_events WHERE job_id = ANY(%s) GROUP BY type",
        [job_ids],
    )
    # The rows were inserted (job.created); the finish adds one event per job.
    assert {e["type"]: e["n"] for e in events} == {"job.created": 6, "job.succeeded": 6}
    cached = sql(
        database_url,
        "SELECT count(*) AS n FROM embedding_cache WHERE project_id = 'proj-clock' "
        "AND text_sha256 = ANY(%s)",
        [[w.chunks.chunks[0][2] for w in (_write(j, f"paragraph {j}") for j in job_ids)]],
    )
    assert cached[0]["n"] == 6


def test_a_cancelled_file_is_left_out_of_its_group(database_url: str, groups: list[int]) -> None:
    job_ids = _jobs(database_url, "cancel", 3)
    sql(database_url, "UPDATE jobs SET cancel_requested = true WHERE id = %s", [job_ids[1]])
    outcomes = _write_all(database_url, [_write(j, f"text {j}") for j in job_ids])
    assert outcomes[1] is None
    assert isinstance(outcomes[0], FinishedTimes) and isinstance(outcomes[2], FinishedTimes)
    rows = {r["id"]: r for r in _succeeded(database_url, job_ids)}
    assert (rows[job_ids[1]]["status"], rows[job_ids[1]]["chunks"]) == ("running", 0)
    assert rows[job_ids[1]]["file_status"] == "in_progress"
    assert rows[job_ids[0]]["status"] == rows[job_ids[2]]["status"] == "succeeded"


def test_one_files_fault_fails_only_that_file(database_url: str, groups: list[int]) -> None:
    job_ids = _jobs(database_url, "fault", 4)
    # The file left the store after its job was claimed: its chunks break the foreign key.
    sql(
        database_url,
        "DELETE FROM vector_store_files WHERE job_id = %s",
        [job_ids[2]],
    )
    outcomes = _write_all(database_url, [_write(j, f"words {j}") for j in job_ids])
    assert isinstance(outcomes[2], psycopg.errors.ForeignKeyViolation), outcomes[2]
    others = [o for i, o in enumerate(outcomes) if i != 2]
    assert all(isinstance(o, FinishedTimes) and o.status == "succeeded" for o in others)
    assert groups[0] == 4 and groups[1:] == [1, 1, 1, 1], groups  # the group, then one by one
    rows = {r["id"]: r for r in _succeeded(database_url, job_ids)}
    assert all(rows[j]["chunks"] == 1 for j in job_ids if j != job_ids[2])
