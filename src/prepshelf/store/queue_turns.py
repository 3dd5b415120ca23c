"""What fair share asks of the queue: is anyone waiting, and where a new job goes in line.

procrastinate takes the `todo` job with the highest priority, then the oldest. prepshelf
uses priority for fair share only: a job queued while its project already has k unfinished
jobs of the same kind gets priority -k, and a job that gives up its turn drops by one, so a
project's first job goes ahead of another project's long backlog.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection


async def others_waiting(conn: AsyncConnection[Any], *, queue: str) -> bool:
    """Whether a job of `queue` is due and waiting for a worker."""
    row = await (
        await conn.execute(
            """SELECT EXISTS (SELECT 1 FROM procrastinate_jobs
                              WHERE queue_name = %s AND status = 'todo'
                                AND (scheduled_at IS NULL OR scheduled_at <= now())) AS waiting""",
            [queue],
        )
    ).fetchone()
    return bool(row and row["waiting"])


async def unfinished_jobs(
    conn: AsyncConnection[Any], *, project_id: str, kind: str, excluding: list[str]
) -> int:
    """How many of the project's jobs of `kind` are queued or running, `excluding` ids."""
    row = await (
        await conn.execute(
            """SELECT count(*) AS n FROM jobs
               WHERE project_id = %s AND kind = %s AND status IN ('queued', 'running')
                 AND NOT (id = ANY(%s))""",
            [project_id, kind, excluding],
        )
    ).fetchone()
    return int(row["n"]) if row else 0
