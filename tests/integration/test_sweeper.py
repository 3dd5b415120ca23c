"""The sweeper against a real database and queue, without workers: a stalled message's job is
released or, past max_attempts, failed with the reason; an orphan (its message ended, the job
did not) is failed; an archive waiting for its members is left alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from psycopg.types.json import Jsonb

from prepshelf.jobs.queue import build_app, defer_ingest_jobs
from prepshelf.jobs.sweeper import sweep
from prepshelf.settings import Settings
from prepshelf.store.db import open_pool
from support.postgres import sql

MAX_ATTEMPTS = 3


def _job(database_url: str, name: str, *, attempts: int, stage: str | None = "embedding") -> None:
    """A running ingest job of file `file-<name>` in store `vs_sw`."""
    sql(
        database_url,
        """INSERT INTO files (id, project_id, filename, purpose, bytes, sha256, blob_key)
           VALUES (%s, 'proj-sw', %s, 'assistants', 1, 'x', %s)""",
        [f"file-{name}", f"{name}.txt", f"files/file-{name}"],
    )
    sql(
        database_url,
        """INSERT INTO jobs (id, project_id, kind, status, stage, attempts, worker,
                             vector_store_id, file_id)
           VALUES (%s, 'proj-sw', 'ingest_file', 'running', %s, %s, 'w-dead', 'vs_sw', %s)""",
        [f"job-{name}", stage, attempts, f"file-{name}"],
    )
    sql(
        database_url,
        """INSERT INTO vector_store_files (vector_store_id, file_id, job_id, status,
                                           chunking_strategy)
           VALUES ('vs_sw', %s, %s, 'in_progress', %s)""",
        [f"file-{name}", f"job-{name}", Jsonb({"type": "static"})],
    )


def test_sweep_releases_fails_and_ends_orphans(database_url: str, tmp_path: Path) -> None:
    sql(
        database_url,
        """INSERT INTO vector_stores (id, project_id, embedding_model, dimensions)
           VALUES ('vs_sw', 'proj-sw', 'm', 384)""",
    )
    _job(database_url, "again", attempts=1)  # stalled, attempts left: back on the queue
    _job(database_url, "spent", attempts=MAX_ATTEMPTS)  # stalled, no attempts left: fails
    _job(database_url, "orphan", attempts=1)  # its message failed, the job still runs
    _job(database_url, "members", attempts=1, stage="members")  # an archive waiting for...
    sql(  # ...its member, still in progress
        database_url,
        """INSERT INTO files (id, project_id, filename, purpose, bytes, sha256, blob_key,
                              parent_file_id, archive_root_id, archive_depth)
           VALUES ('file-member', 'proj-sw', 'a/m.txt', 'assistants', 1, 'y', 'files/file-member',
                   'file-members', 'file-members', 1)""",
    )
    sql(
        database_url,
        """INSERT INTO vector_store_files (vector_store_id, file_id, status, chunking_strategy)
           VALUES ('vs_sw', 'file-member', 'in_progress', '{"type": "static"}')""",
    )
    settings = Settings(database_url=database_url, data_dir=tmp_path, max_attempts=MAX_ATTEMPTS)

    async def main() -> dict[str, int]:
        app = build_app(database_url, pool_size=2)
        pool = await open_pool(database_url, max_size=2)
        try:
            async with app.open_async():
                async with pool.connection() as conn:
                    ids = ["job-again", "job-spent", "job-orphan", "job-members"]
                    # One stalled job in each lane: the sweeper watches both.
                    qids = await defer_ingest_jobs(app, conn, ids, small={"job-again"})
                    for job_id, qid in zip(ids, qids, strict=True):
                        await conn.execute(
                            "UPDATE jobs SET queue_job_id = %s WHERE id = %s", [qid, job_id]
                        )
                    # Taken by a worker whose row is gone (stalled), or ended (orphans).
                    await conn.execute(
                        "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = ANY(%s)",
                        [qids[:2]],
                    )
                    await conn.execute(
                        "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = ANY(%s)",
                        [qids[2:]],
                    )
                return await sweep(app, pool, settings)
        finally:
            await pool.close()

    assert asyncio.run(main()) == {"requeued": 1, "failed": 1, "orphans": 1}
    jobs = {
        r["id"]: r
        for r in sql(
            database_url,
            """SELECT j.id, j.status, j.error, j.attempt_log, p.status AS queue_status,
                      vsf.status AS file_status, vsf.last_error
               FROM jobs j JOIN procrastinate_jobs p ON p.id = j.queue_job_id
               JOIN vector_store_files vsf ON vsf.job_id = j.id""",
        )
    }
    again, spent, orphan, members = (
        jobs[f"job-{n}"] for n in ("again", "spent", "orphan", "members")
    )
    assert (again["status"], again["queue_status"], again["file_status"]) == (
        "queued",
        "todo",
        "in_progress",
    )
    assert again["attempt_log"][-1]["outcome"] == "released: worker lost (no heartbeat)"
    assert again["attempt_log"][-1]["worker"] == "w-dead"

    assert (spent["status"], spent["queue_status"], spent["file_status"]) == (
        "failed",
        "failed",
        "failed",
    )
    assert spent["error"]["message"] == (
        f"spent.txt: embedding: the worker processing it stopped {MAX_ATTEMPTS} times "
        "(killed, out of memory or crashed); giving up"
    )
    assert spent["last_error"]["message"] == spent["error"]["message"]
    assert spent["attempt_log"][-1]["attempt"] == MAX_ATTEMPTS

    assert (orphan["status"], orphan["file_status"]) == ("failed", "failed")
    assert orphan["error"]["message"] == (
        "orphan.txt: embedding: processing ended unexpectedly (queue message failed)"
    )
    assert (members["status"], members["file_status"]) == ("running", "in_progress")
