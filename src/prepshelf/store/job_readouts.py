"""Read-outs of the jobs table: one job, a project's jobs by filter and page (the /v1/jobs
views), a finished job's times and jobs per status (metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from prepshelf.domain.jobs import Job
from prepshelf.store.pages import Page, PageRequest, fetch_page
from prepshelf.store.rows import typed


def job_of(row: Any) -> Job:
    """A `SELECT *` row of jobs as the Job it is."""
    return typed(Job, row)


@dataclass(frozen=True)
class FinishedTimes:
    """A finished job's wall time and the time it spent in each stage."""

    kind: str
    status: str
    seconds: float | None  # finished_at - started_at; None when it never started
    stage_durations: dict[str, float]


# What `finished_times_of` reads from a jobs row (a SELECT list, or a RETURNING clause).
FINISHED_TIMES_COLUMNS = """kind, status, stage_durations,
    extract(epoch FROM finished_at - started_at)::float8 AS seconds"""


async def finished_times(conn: AsyncConnection[Any], *, job_id: str) -> FinishedTimes | None:
    """None while the job is not finished (or is gone)."""
    row = await (
        await conn.execute(
            f"SELECT {FINISHED_TIMES_COLUMNS} FROM jobs WHERE id = %s AND finished_at IS NOT NULL",
            [job_id],
        )
    ).fetchone()
    return None if row is None else finished_times_of(row)


def finished_times_of(row: dict[str, Any]) -> FinishedTimes:
    return FinishedTimes(
        kind=row["kind"],
        status=row["status"],
        seconds=row["seconds"],
        stage_durations={k: float(v) for k, v in (row["stage_durations"] or {}).items()},
    )


async def count_by_status(conn: AsyncConnection[Any]) -> dict[str, int]:
    """Jobs per status, only statuses that have any."""
    rows = await (
        await conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    ).fetchall()
    return {r["status"]: int(r["n"]) for r in rows}


async def get_job(
    conn: AsyncConnection[Any], *, job_id: str, project_id: str | None = None
) -> Job | None:
    query = "SELECT * FROM jobs WHERE id = %s"
    args: list[Any] = [job_id]
    if project_id is not None:
        query += " AND project_id = %s"
        args.append(project_id)
    row = await (await conn.execute(query, args)).fetchone()
    return job_of(row) if row else None


@dataclass(frozen=True)
class JobFilter:
    """What GET /v1/jobs may narrow by; None leaves a field out."""

    status: str | None = None
    kind: str | None = None
    vector_store_id: str | None = None
    file_batch_id: str | None = None
    # A /v1/batches batch, or (as before file_batch_id existed) a file batch: either parent.
    batch_id: str | None = None
    file_id: str | None = None
    created_after: int | None = None  # Unix seconds, inclusive


async def list_jobs(
    conn: AsyncConnection[Any], *, project_id: str, filters: JobFilter, page: PageRequest
) -> Page[Job]:
    """A project's jobs, newest first by default, one cursor page at a time."""
    where: list[str] = ["project_id = %s"]
    params: list[Any] = [project_id]
    if filters.created_after is not None:
        where.append("created_at >= to_timestamp(%s)")
        params.append(filters.created_after)
    for column, value in (
        ("status", filters.status),
        ("kind", filters.kind),
        ("vector_store_id", filters.vector_store_id),
        ("file_batch_id", filters.file_batch_id),
        ("file_id", filters.file_id),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if filters.batch_id is not None:
        where.append("(batch_id = %s OR file_batch_id = %s)")
        params += [filters.batch_id, filters.batch_id]
    result = await fetch_page(
        conn,
        select="SELECT * FROM jobs",
        where=" AND ".join(where),
        params=params,
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM jobs WHERE project_id = %s AND id = %s",
        cursor_params=[project_id],
        page=page,
    )
    return result.map(job_of)
