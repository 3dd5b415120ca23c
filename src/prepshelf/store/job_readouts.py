"""Read-outs of the jobs table for metrics: one finished job's times, jobs per status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection


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
