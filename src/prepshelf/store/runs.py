"""Job rows of runs (source syncs, evaluation runs): created with their schedule link and
parameters, claimed, advanced and given their result. The shared transitions (fail, cancel,
release, succeed) are store/jobs.py's, so every job kind ends the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.jobs import Job
from prepshelf.domain.runs import RunJob
from prepshelf.store import jobs as jobs_db
from prepshelf.store.job_readouts import job_of
from prepshelf.store.pages import Page, PageRequest, fetch_page

Conn = AsyncConnection[Any]


def _run_job(row: dict[str, Any]) -> RunJob:
    return RunJob(
        id=row["id"],
        project_id=row["project_id"],
        kind=row["kind"],
        status=row["status"],
        stage=row["stage"],
        attempts=row["attempts"],
        worker=row["worker"],
        cancel_requested=row["cancel_requested"],
        vector_store_id=row["vector_store_id"],
        schedule_id=row["schedule_id"],
        scheduled_for=row["scheduled_for"],
        eval_run_id=row["eval_run_id"],
        params=row["params"] or {},
        result=row["result"],
        created_at=row["created_at"],
    )


async def insert_run_job(
    conn: Conn,
    *,
    job_id: str,
    project_id: str,
    kind: str,
    vector_store_id: str | None,
    params: dict[str, Any],
    progress_unit: str,
    schedule_id: str | None = None,
    scheduled_for: datetime | None = None,
    eval_run_id: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO jobs (id, project_id, kind, status, vector_store_id, schedule_id,
                             scheduled_for, params, eval_run_id, progress_unit)
           VALUES (%s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s)""",
        [
            job_id,
            project_id,
            kind,
            vector_store_id,
            schedule_id,
            scheduled_for,
            Jsonb(params),
            eval_run_id,
            progress_unit,
        ],
    )


async def get_run_job(conn: Conn, *, job_id: str) -> RunJob | None:
    row = await (await conn.execute("SELECT * FROM jobs WHERE id = %s", [job_id])).fetchone()
    return _run_job(row) if row else None


async def active_run_of_schedule(conn: Conn, *, schedule_id: str) -> str | None:
    """The queued or running job of the schedule, if any (a fresh read, not a snapshot)."""
    row = await (
        await conn.execute(
            """SELECT id FROM jobs WHERE schedule_id = %s AND status IN ('queued', 'running')
               LIMIT 1""",
            [schedule_id],
        )
    ).fetchone()
    return row["id"] if row else None


async def claim(conn: Conn, *, job_id: str, worker: str) -> RunJob | None:
    """Mark the run running on this worker (one more attempt); None when there is nothing
    to do (final, or cancelled before it started)."""
    row = await jobs_db.claim_job(conn, job_id=job_id, worker=worker)
    return _run_job(row) if row else None


async def heartbeat(conn: Conn, *, job_id: str, worker: str) -> bool:
    """A waiting run looks in: note the worker and time; True when cancel was requested."""
    cur = await conn.execute(
        """UPDATE jobs SET heartbeat_at = clock_timestamp(), worker = %s
           WHERE id = %s RETURNING cancel_requested""",
        [worker, job_id],
    )
    row = await cur.fetchone()
    return row is None or bool(row["cancel_requested"])


async def set_progress(conn: Conn, *, job_id: str, done: int, total: int | None = None) -> bool:
    """Advance progress; returns True when cancel was requested."""
    cur = await conn.execute(
        """UPDATE jobs SET progress_done = %s, progress_total = coalesce(%s, progress_total),
                  heartbeat_at = clock_timestamp()
           WHERE id = %s RETURNING cancel_requested""",
        [done, total, job_id],
    )
    row = await cur.fetchone()
    return row is None or bool(row["cancel_requested"])


async def set_result(conn: Conn, *, job_id: str, result: dict[str, Any]) -> None:
    await conn.execute("UPDATE jobs SET result = %s WHERE id = %s", [Jsonb(result), job_id])


async def finish_succeeded(conn: Conn, *, job: RunJob, result: dict[str, Any] | None) -> None:
    async with conn.transaction():
        if result is not None:
            await set_result(conn, job_id=job.id, result=result)
        await jobs_db.finish_succeeded(conn, job=job, usage_bytes=0)


async def finish_failed(
    conn: Conn, *, job: RunJob, error: dict[str, Any], result: dict[str, Any] | None = None
) -> None:
    async with conn.transaction():
        if result is not None:
            await set_result(conn, job_id=job.id, result=result)
        await jobs_db.finish_failed(conn, job=job, error=error)


async def finish_cancelled(conn: Conn, *, job_id: str, result: dict[str, Any] | None) -> None:
    async with conn.transaction():
        if result is not None:
            await set_result(conn, job_id=job_id, result=result)
        await jobs_db.finish_cancelled(conn, job_id=job_id)


async def release(conn: Conn, *, job: RunJob, reason: str, error: dict[str, Any] | None) -> None:
    await jobs_db.release_job(conn, job=job, reason=reason, error=error)


async def list_schedule_runs(conn: Conn, *, schedule_id: str, page: PageRequest) -> Page[Job]:
    """The schedule's runs as jobs (rendered by the /v1/jobs view)."""
    result = await fetch_page(
        conn,
        select="SELECT * FROM jobs",
        where="schedule_id = %s",
        params=[schedule_id],
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM jobs WHERE schedule_id = %s AND id = %s",
        cursor_params=[schedule_id],
        page=page,
    )
    return result.map(job_of)
