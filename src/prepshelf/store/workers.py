"""Worker processes and their heartbeats: who is alive to take work, as /readyz reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

_FORGET_AFTER_S = 24 * 3600  # a process silent this long is gone (killed, host lost)


@dataclass(frozen=True)
class WorkerCounts:
    processes: int  # `prepshelf worker` processes with a recent heartbeat
    sub_workers: int  # procrastinate workers (one per queue per process) beating recently
    sub_workers_declared: int  # how many those processes say they run
    queue_depth: int  # ingest jobs waiting for a worker


async def beat(
    conn: AsyncConnection[Any], *, name: str, hostname: str, pid: int, sub_workers: int
) -> None:
    """Record that this worker process is alive (and forget processes long gone)."""
    await conn.execute(
        """INSERT INTO worker_processes (name, hostname, pid, sub_workers)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(),
                                            sub_workers = EXCLUDED.sub_workers""",
        [name, hostname, pid, sub_workers],
    )
    await conn.execute(
        "DELETE FROM worker_processes WHERE heartbeat_at < now() - make_interval(secs => %s)",
        [_FORGET_AFTER_S],
    )


async def forget(conn: AsyncConnection[Any], *, name: str) -> None:
    """A worker stopping cleanly leaves at once rather than after its heartbeat expires."""
    await conn.execute("DELETE FROM worker_processes WHERE name = %s", [name])


async def live_counts(
    conn: AsyncConnection[Any], *, within_s: float, queue: str = "ingest"
) -> WorkerCounts:
    row = await (
        await conn.execute(
            """SELECT
                 (SELECT count(*) FROM worker_processes
                   WHERE heartbeat_at > now() - make_interval(secs => %(s)s)) AS processes,
                 (SELECT coalesce(sum(sub_workers), 0) FROM worker_processes
                   WHERE heartbeat_at > now() - make_interval(secs => %(s)s)) AS declared,
                 (SELECT count(*) FROM procrastinate_workers
                   WHERE last_heartbeat > now() - make_interval(secs => %(s)s)) AS sub_workers,
                 (SELECT count(*) FROM procrastinate_jobs
                   WHERE status = 'todo' AND queue_name = %(q)s) AS queue_depth""",
            {"s": within_s, "q": queue},
        )
    ).fetchone()
    assert row is not None  # dict rows (the pool's row factory)
    return WorkerCounts(
        processes=int(row["processes"]),
        sub_workers=int(row["sub_workers"]),
        sub_workers_declared=int(row["declared"]),
        queue_depth=int(row["queue_depth"]),
    )


async def queue_depths(conn: AsyncConnection[Any]) -> dict[str, int]:
    """Queue messages waiting for a worker (todo), per queue that has any."""
    rows = await (
        await conn.execute(
            "SELECT queue_name, count(*) AS n FROM procrastinate_jobs "
            "WHERE status = 'todo' GROUP BY queue_name ORDER BY queue_name"
        )
    ).fetchall()
    return {r["queue_name"]: int(r["n"]) for r in rows}
