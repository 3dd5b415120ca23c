"""Job events: reading them in a safe order, deciding when a stream is over, pruning.

Rows are written by a trigger on `jobs` (migration 0002, re-created in 0072) in the transaction
of the change.
Sequence ids can commit out of order (transaction A takes id 9, B takes id 10, B commits
first), so a reader that only remembered "last id" could skip 9 forever. Readers walk
(txid, id) instead and stop at the oldest transaction still running: every event before that
point is settled, and nothing can appear behind it later. Clients still see plain event ids;
`cursor_of` maps a Last-Event-ID back to its (txid, id).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection, Notify

from prepshelf.domain.jobs import JobEvent
from prepshelf.store.rows import typed

# `batch_id` is a FILE batch here (job_events.batch_id = jobs.file_batch_id): the public
# /v1/events?batch_id= parameter kept its name when jobs told their two parents apart.
Scope = Literal["job_id", "vector_store_id", "batch_id"]
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
CHANNEL = "prepshelf_events"  # the trigger's pg_notify channel (migrations 0002, 0072)


@dataclass(frozen=True)
class Cursor:
    """Position in a stream: after (txid, event_id), or, for an unknown id, after `min_id`."""

    txid: str | None = None
    event_id: int = 0


@dataclass(frozen=True)
class Read:
    events: list[JobEvent]  # settled events, in delivery order
    held: bool  # committed events exist past the horizon: read again shortly
    full: bool  # the page was full: read again at once


async def cursor_of(conn: AsyncConnection[Any], *, project_id: str, event_id: int | None) -> Cursor:
    if not event_id:
        return Cursor()
    row = await (
        await conn.execute(
            "SELECT txid::text AS txid FROM job_events WHERE id = %s AND project_id = %s",
            [event_id, project_id],
        )
    ).fetchone()
    # A pruned or foreign id resumes by id alone; the first event read sets a full cursor.
    return Cursor(txid=row["txid"] if row else None, event_id=event_id)


async def read_events(
    conn: AsyncConnection[Any],
    *,
    project_id: str,
    scope: Scope,
    value: str,
    after: Cursor,
    limit: int = 500,
) -> Read:
    if after.txid is not None:
        position, args = "(txid, id) > (%s::xid8, %s)", [after.txid, after.event_id]
    else:
        position, args = "id > %s", [after.event_id]
    cur = await conn.execute(
        f"""SELECT id, txid::text AS txid, type, data, created_at,
                   txid < pg_snapshot_xmin(pg_current_snapshot()) AS settled
            FROM job_events
            WHERE project_id = %s AND {scope} = %s AND {position}
            ORDER BY txid, id LIMIT %s""",
        [project_id, value, *args, limit],
    )
    rows = await cur.fetchall()
    settled = [typed(JobEvent, r) for r in rows if r["settled"]]
    return Read(events=settled, held=len(settled) < len(rows), full=len(rows) == limit)


def advance(cursor: Cursor, event: JobEvent) -> Cursor:
    return Cursor(txid=event.txid, event_id=event.id)


async def scope_exists(
    conn: AsyncConnection[Any], *, project_id: str, scope: Scope, value: str
) -> bool:
    query = {
        "job_id": "SELECT 1 FROM jobs WHERE id = %s AND project_id = %s",
        "vector_store_id": "SELECT 1 FROM vector_stores WHERE id = %s AND project_id = %s",
        "batch_id": """SELECT 1 FROM file_batches b JOIN vector_stores s
                       ON s.id = b.vector_store_id WHERE b.id = %s AND s.project_id = %s""",
    }[scope]
    return await (await conn.execute(query, [value, project_id])).fetchone() is not None


async def scope_finished(conn: AsyncConnection[Any], *, scope: Scope, value: str) -> bool:
    """A job stream ends when the job is final, a batch stream when none of its files is in
    progress; a store stream never ends."""
    if scope == "job_id":
        cur = await conn.execute("SELECT status FROM jobs WHERE id = %s", [value])
        row = await cur.fetchone()
        return row is None or row["status"] in FINAL_STATUSES
    if scope == "batch_id":
        row = await (
            await conn.execute(
                """SELECT NOT EXISTS (SELECT 1 FROM vector_store_files
                                      WHERE file_batch_id = %s AND status = 'in_progress')
                   AS done""",
                [value],
            )
        ).fetchone()
        return bool(row and row["done"])
    return False


async def prune_events(
    conn: AsyncConnection[Any], *, older_than_s: float, chunk: int = 10_000
) -> int:
    """Delete events older than the retention, a chunk at a time (short transactions)."""
    total = 0
    while True:
        cur = await conn.execute(
            """DELETE FROM job_events WHERE id IN (
                   SELECT id FROM job_events
                   WHERE created_at < clock_timestamp() - make_interval(secs => %s)
                   LIMIT %s)""",
            [older_than_s, chunk],
        )
        total += cur.rowcount
        if cur.rowcount < chunk:
            return total


async def listen(conn: AsyncConnection[Any]) -> AsyncGenerator[Notify]:
    """Subscribe `conn` (autocommit) to new-event notifications; iterate what this returns.

    A notification only says that something was committed: readers then read their rows.
    """
    await conn.execute(f"LISTEN {CHANNEL}")
    return conn.notifies()
