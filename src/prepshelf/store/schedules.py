"""Schedule rows: create, read, change, pause, and the scanner's claim of due schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.schedules import Schedule
from prepshelf.store.pages import PageRequest, fetch_page

Conn = AsyncConnection[Any]


def _schedule(row: dict[str, Any]) -> Schedule:
    return Schedule(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        kind=row["kind"],
        params=row["params"],
        cron=row["cron"],
        timezone=row["timezone"],
        paused_at=row["paused_at"],
        next_run_at=row["next_run_at"],
        last_run_at=row["last_run_at"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_schedule(
    conn: Conn,
    *,
    schedule_id: str,
    project_id: str,
    name: str | None,
    kind: str,
    params: dict[str, Any],
    cron: str,
    timezone: str,
    next_run_at: datetime | None,
    paused: bool,
    metadata: dict[str, str],
) -> Schedule:
    cur = await conn.execute(
        """INSERT INTO schedules (id, project_id, name, kind, params, cron, timezone,
                                  next_run_at, paused_at, metadata)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
                   CASE WHEN %s THEN clock_timestamp() END, %s)
           RETURNING *""",
        [
            schedule_id,
            project_id,
            name,
            kind,
            Jsonb(params),
            cron,
            timezone,
            None if paused else next_run_at,
            paused,
            Jsonb(metadata),
        ],
    )
    row = await cur.fetchone()
    assert row is not None
    return _schedule(row)


async def get_schedule(
    conn: Conn, *, project_id: str, schedule_id: str, for_update: bool = False
) -> Schedule | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT * FROM schedules WHERE id = %s AND project_id = %s{lock}",
        [schedule_id, project_id],
    )
    row = await cur.fetchone()
    return _schedule(row) if row else None


async def list_schedules(
    conn: Conn, *, project_id: str, page: PageRequest, kind: str | None = None
) -> tuple[list[Schedule], bool]:
    where, params = "project_id = %s", [project_id]
    if kind is not None:
        where += " AND kind = %s"
        params.append(kind)
    result = await fetch_page(
        conn,
        select="SELECT * FROM schedules",
        where=where,
        params=params,
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM schedules WHERE project_id = %s AND id = %s",
        cursor_params=[project_id],
        page=page,
    )
    return [_schedule(r) for r in result.rows], result.has_more


async def update_schedule(
    conn: Conn,
    *,
    schedule_id: str,
    name: str | None,
    params: dict[str, Any],
    cron: str,
    timezone: str,
    next_run_at: datetime | None,
    metadata: dict[str, str],
) -> Schedule:
    """Write every field (the caller merged the change); a paused schedule stays unscheduled."""
    cur = await conn.execute(
        """UPDATE schedules SET name = %s, params = %s, cron = %s, timezone = %s,
                  next_run_at = CASE WHEN paused_at IS NULL THEN %s::timestamptz END,
                  metadata = %s, updated_at = clock_timestamp()
           WHERE id = %s RETURNING *""",
        [name, Jsonb(params), cron, timezone, next_run_at, Jsonb(metadata), schedule_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return _schedule(row)


async def set_paused(
    conn: Conn, *, schedule_id: str, paused: bool, next_run_at: datetime | None
) -> Schedule:
    """Pause (no due times until resumed) or resume from `next_run_at` (missed ones skipped)."""
    cur = await conn.execute(
        """UPDATE schedules SET
                  paused_at = CASE WHEN %s::boolean THEN coalesce(paused_at, clock_timestamp()) END,
                  next_run_at = CASE WHEN %s THEN NULL ELSE %s::timestamptz END,
                  updated_at = clock_timestamp()
           WHERE id = %s RETURNING *""",
        [paused, paused, next_run_at, schedule_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return _schedule(row)


async def delete_schedule(conn: Conn, *, project_id: str, schedule_id: str) -> bool:
    """Delete the schedule; its runs stay as jobs (their schedule_id becomes NULL)."""
    cur = await conn.execute(
        "DELETE FROM schedules WHERE id = %s AND project_id = %s", [schedule_id, project_id]
    )
    return cur.rowcount > 0


async def delete_schedules_of_eval(conn: Conn, *, project_id: str, eval_id: str) -> int:
    cur = await conn.execute(
        """DELETE FROM schedules WHERE project_id = %s AND kind = 'eval_run'
              AND params ->> 'eval_id' = %s""",
        [project_id, eval_id],
    )
    return cur.rowcount


async def claim_due(conn: Conn, *, limit: int) -> tuple[datetime, list[Schedule]]:
    """Lock up to `limit` due schedules for the caller's transaction; return them with the
    database's clock (which decides what is due, whatever the host clocks say).

    SKIP LOCKED: a schedule another scanner (or a "run now") holds is left to it. A schedule
    whose previous run is still queued or running is not due yet: its due times collapse
    into one run once that run ends (the catch-up policy).
    """
    cur = await conn.execute(
        """SELECT s.*, now() AS db_now FROM schedules s
           WHERE s.paused_at IS NULL AND s.next_run_at <= now()
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.schedule_id = s.id
                               AND j.status IN ('queued', 'running'))
           ORDER BY s.next_run_at
           LIMIT %s
           FOR UPDATE OF s SKIP LOCKED""",
        [limit],
    )
    rows = await cur.fetchall()
    if not rows:
        now = await (await conn.execute("SELECT now() AS db_now")).fetchone()
        assert now is not None
        return now["db_now"], []
    return rows[0]["db_now"], [_schedule(r) for r in rows]


async def advance(
    conn: Conn, *, schedule_id: str, next_run_at: datetime | None, started: bool
) -> None:
    """Set the next due time; `started` records that a run was started just now."""
    await conn.execute(
        """UPDATE schedules SET next_run_at = %s,
                  last_run_at = CASE WHEN %s THEN now() ELSE last_run_at END
           WHERE id = %s""",
        [next_run_at, started, schedule_id],
    )


async def note_run_started(conn: Conn, *, schedule_id: str) -> None:
    await conn.execute("UPDATE schedules SET last_run_at = now() WHERE id = %s", [schedule_id])
