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


async def place_in_line(
    conn: AsyncConnection[Any], *, queue_job_ids: list[int], ahead: int
) -> None:
    """Give new queue jobs of one project the priorities -ahead, -ahead-1, … in that order."""
    await conn.execute(
        """UPDATE procrastinate_jobs AS pj SET priority = -(%s + t.ord - 1)
           FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(id, ord) WHERE pj.id = t.id""",
        [ahead, queue_job_ids],
    )


async def rerank_waiting(conn: AsyncConnection[Any], *, queue: str) -> int:
    """Renumber the waiting jobs of `queue` per project (0, -1, -2, … in their order), so a
    project's priority says how many of its own jobs are still ahead, not how many were when
    it was queued; returns how many changed."""
    cur = await conn.execute(
        """UPDATE procrastinate_jobs AS pj SET priority = r.rank
           FROM (SELECT q.id,
                        1 - row_number() OVER (PARTITION BY j.project_id
                                               ORDER BY q.priority DESC, q.id) AS rank
                 FROM procrastinate_jobs q JOIN jobs j ON j.queue_job_id = q.id
                 WHERE q.queue_name = %s AND q.status = 'todo') AS r
           WHERE pj.id = r.id AND pj.priority <> r.rank""",
        [queue],
    )
    return cur.rowcount
