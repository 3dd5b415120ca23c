"""A running job's own writes: its stage and progress, its result, its checkpoints, and
whether cancel was asked. Its transitions (claim, finish, release) are store/jobs.py's."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.jobs import StageTimes
from prepshelf.store.job_stage_sql import ADD_DURATIONS, CLOSE_STAGE, rounded

# Progress fields a stage change may bring; a None leaves the row's value.
_PROGRESS_SET = """
    progress_done = coalesce(%s, progress_done),
    progress_total = coalesce(%s, progress_total),
    progress_unit = coalesce(%s, progress_unit),
    chunks_stored = coalesce(%s, chunks_stored)"""


def _stage_clock_set(times: StageTimes | None) -> tuple[str, list[Any]]:
    """SET items that close the row's stage and start the next one: by the row's own clock
    (stage_started_at), or by the worker's (`times`, jobs/stage_clock.py): the stages it went
    through since the row's last write get their seconds, the new one its measured start."""
    if times is None:
        return f"{CLOSE_STAGE}, stage_started_at = clock_timestamp()", []
    return (
        f"{ADD_DURATIONS}, stage_started_at = clock_timestamp() - make_interval(secs => %s)",
        [rounded(times.closed), times.started_ago_s],
    )


async def set_stage(
    conn: AsyncConnection[Any],
    *,
    job_id: str,
    stage: str,
    progress_total: int | None = None,
    progress_unit: str | None = None,
    chunks_stored: bool | None = None,
    progress_done: int | None = None,
    times: StageTimes | None = None,
) -> None:
    """Enter `stage`; progress fields given replace the old ones (a new unit counts anew:
    pass progress_done=0 with it). `times`: the worker measured the stages itself."""
    clock, clock_params = _stage_clock_set(times)
    await conn.execute(
        f"""UPDATE jobs SET {clock}, stage = %s, {_PROGRESS_SET},
                  heartbeat_at = clock_timestamp()
            WHERE id = %s""",
        [
            *clock_params,
            stage,
            progress_done,
            progress_total,
            progress_unit,
            chunks_stored,
            job_id,
        ],
    )


async def set_progress(conn: AsyncConnection[Any], *, job_id: str, done: int) -> bool:
    """Advance progress within the current stage; returns True when cancel was requested."""
    cur = await conn.execute(
        """UPDATE jobs SET progress_done = %s, heartbeat_at = clock_timestamp()
           WHERE id = %s RETURNING cancel_requested""",
        [done, job_id],
    )
    row = await cur.fetchone()
    return row is None or bool(row["cancel_requested"])


async def set_result(
    conn: AsyncConnection[Any], *, job_id: str, result: dict[str, Any] | None
) -> None:
    """What the job found beyond its chunks (e.g. OCR's pages and confidences)."""
    await conn.execute(
        "UPDATE jobs SET result = %s WHERE id = %s",
        [Jsonb(result) if result is not None else None, job_id],
    )


async def record_checkpoint(
    conn: AsyncConnection[Any],
    *,
    job_id: str,
    done: int,
    computed: int,
    cached: int,
    timings: dict[str, float] | None = None,
    chunks_stored: bool | None = None,
    progress_total: int | None = None,
    progress_unit: str | None = None,
    stage: str | None = None,
) -> bool:
    """Advance progress after a checkpoint is written; returns True when cancel was requested.

    A checkpoint none of whose vectors had to be computed counts as reused, any other as
    embedded.

    `timings` (seconds, e.g. the model's own time inside the embedding stage) accumulate
    under their own keys of stage_durations, next to the stages' wall times. `stage` names
    the checkpoint's stage where the row may not show it yet (jobs/stage_clock.py), so the
    event says which stage the progress counts."""
    cur = await conn.execute(
        """UPDATE jobs SET progress_done = %s,
                  stage_durations = stage_durations || (
                      SELECT coalesce(jsonb_object_agg(k, round(
                          coalesce((stage_durations->>k)::numeric, 0) + v::numeric, 3)), '{}')
                      FROM jsonb_each_text(%s::jsonb) AS t(k, v)),
                  checkpoints_embedded = checkpoints_embedded
                                         + (CASE WHEN %s > 0 THEN 1 ELSE 0 END),
                  checkpoints_reused = checkpoints_reused + (CASE WHEN %s = 0 THEN 1 ELSE 0 END),
                  embeddings_computed = embeddings_computed + %s,
                  embeddings_cached = embeddings_cached + %s,
                  chunks_stored = coalesce(%s, chunks_stored),
                  progress_total = coalesce(%s, progress_total),
                  progress_unit = coalesce(%s, progress_unit),
                  stage = coalesce(%s, stage),
                  heartbeat_at = clock_timestamp()
           WHERE id = %s RETURNING cancel_requested""",
        [
            done,
            Jsonb(timings or {}),
            computed,
            computed,
            computed,
            cached,
            chunks_stored,
            progress_total,
            progress_unit,
            stage,
            job_id,
        ],
    )
    row = await cur.fetchone()
    return bool(row and row["cancel_requested"])


async def is_cancel_requested(conn: AsyncConnection[Any], *, job_id: str) -> bool:
    row = await (
        await conn.execute("SELECT cancel_requested FROM jobs WHERE id = %s", [job_id])
    ).fetchone()
    return row is None or bool(row["cancel_requested"])


async def lock_cancel_requested(conn: AsyncConnection[Any], *, job_id: str) -> bool | None:
    """Lock the job row (FOR UPDATE) until commit; whether cancel was requested, None when
    the job is gone."""
    row = await (
        await conn.execute("SELECT cancel_requested FROM jobs WHERE id = %s FOR UPDATE", [job_id])
    ).fetchone()
    return None if row is None else bool(row["cancel_requested"])
