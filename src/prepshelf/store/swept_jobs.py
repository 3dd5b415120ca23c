"""What the sweeper reads: jobs whose worker went quiet, and jobs whose queue message ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

Row = dict[str, Any]


@dataclass(frozen=True)
class SweptJob:
    """A job the sweeper looks at (a stalled queue message's, or an orphan) and its file."""

    id: str
    kind: str
    status: str
    attempts: int
    worker: str | None
    stage: str | None
    file_id: str | None
    filename: str | None
    queue_status: str | None = None  # orphans only: how their queue message ended


def _swept(row: Row) -> SweptJob:
    return SweptJob(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        attempts=row["attempts"],
        worker=row["worker"],
        stage=row["stage"],
        file_id=row["file_id"],
        filename=row["filename"],
        queue_status=row.get("queue_status"),
    )


async def get_swept_job(conn: AsyncConnection[Any], *, job_id: str | None) -> SweptJob | None:
    """The job of a stalled queue message, with its file's name."""
    row = await (
        await conn.execute(
            """SELECT j.*, f.filename FROM jobs j LEFT JOIN files f ON f.id = j.file_id
               WHERE j.id = %s""",
            [job_id],
        )
    ).fetchone()
    return None if row is None else _swept(row)


async def orphaned_jobs(conn: AsyncConnection[Any]) -> list[SweptJob]:
    """Jobs still queued or running whose queue message already ended (an archive in stage
    'members' waits for its members, not for a message)."""
    rows = await (
        await conn.execute(
            """SELECT j.*, f.filename, p.status AS queue_status
               FROM jobs j
               JOIN procrastinate_jobs p ON p.id = j.queue_job_id
               LEFT JOIN files f ON f.id = j.file_id
               WHERE j.status IN ('queued', 'running')
                 AND j.stage IS DISTINCT FROM 'members'  -- an archive waits for its members
                 AND p.status IN ('succeeded', 'failed', 'cancelled', 'aborted')"""
        )
    ).fetchall()
    return [_swept(r) for r in rows]
