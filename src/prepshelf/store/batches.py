"""Queries on /v1/batches rows and their checkpointed slices.

A batch's status moves validating → in_progress → finalizing → completed, or ends failed,
expired or cancelled (through cancelling). Each final status stamps its own timestamp column.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.store.pages import Page, PageRequest, fetch_page

Row = dict[str, Any]

FINAL = ("failed", "completed", "expired", "cancelled")
_STAMP = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


async def insert_batch(
    conn: AsyncConnection[Any],
    *,
    batch_id: str,
    project_id: str,
    endpoint: str,
    input_file_id: str,
    completion_window: str,
    window_s: float,
    metadata: dict[str, str] | None,
    job_id: str,
) -> Row:
    cur = await conn.execute(
        """INSERT INTO batches (id, project_id, endpoint, input_file_id, completion_window,
                                status, metadata, job_id, expires_at)
           VALUES (%s, %s, %s, %s, %s, 'validating', %s, %s,
                   clock_timestamp() + make_interval(secs => %s))
           RETURNING *""",
        [
            batch_id,
            project_id,
            endpoint,
            input_file_id,
            completion_window,
            Jsonb(metadata) if metadata is not None else None,
            job_id,
            window_s,
        ],
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_batch(
    conn: AsyncConnection[Any], *, batch_id: str, project_id: str | None = None
) -> Row | None:
    query, args = "SELECT * FROM batches WHERE id = %s", [batch_id]
    if project_id is not None:
        query += " AND project_id = %s"
        args.append(project_id)
    return await (await conn.execute(query, args)).fetchone()


async def get_batch_of_job(conn: AsyncConnection[Any], *, job_id: str) -> Row | None:
    return await (
        await conn.execute("SELECT * FROM batches WHERE job_id = %s", [job_id])
    ).fetchone()


async def list_batches(conn: AsyncConnection[Any], *, project_id: str, page: PageRequest) -> Page:
    return await fetch_page(
        conn,
        select="SELECT * FROM batches",
        where="project_id = %s",
        params=[project_id],
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM batches WHERE project_id = %s AND id = %s",
        cursor_params=[project_id],
        page=page,
    )


async def request_cancel(conn: AsyncConnection[Any], *, batch_id: str) -> None:
    """Mark a running batch cancelling and flag its job; the worker ends it between slices."""
    async with conn.transaction():
        row = await (
            await conn.execute(
                """UPDATE batches SET status = 'cancelling', cancelling_at = clock_timestamp()
                   WHERE id = %s AND status IN ('validating', 'in_progress')
                   RETURNING job_id""",
                [batch_id],
            )
        ).fetchone()
        if row is not None:
            await conn.execute(
                """UPDATE jobs SET cancel_requested = true
                   WHERE id = %s AND status IN ('queued', 'running')""",
                [row["job_id"]],
            )


async def set_status(
    conn: AsyncConnection[Any],
    *,
    batch_id: str,
    status: str,
    only_from: tuple[str, ...],
    errors: list[dict[str, Any]] | None = None,
    output_file_id: str | None = None,
    error_file_id: str | None = None,
    total: int | None = None,
    model: str | None = None,
) -> bool:
    """Move the batch to `status` (stamping its time) if it is in one of `only_from`."""
    stamp = _STAMP[status]
    cur = await conn.execute(
        f"""UPDATE batches SET status = %s, {stamp} = coalesce({stamp}, clock_timestamp()),
                  errors = coalesce(%s, errors),
                  output_file_id = coalesce(%s, output_file_id),
                  error_file_id = coalesce(%s, error_file_id),
                  total = coalesce(%s, total),
                  model = coalesce(%s, model)
            WHERE id = %s AND status = ANY(%s)""",
        [
            status,
            Jsonb({"object": "list", "data": errors}) if errors is not None else None,
            output_file_id,
            error_file_id,
            total,
            model,
            batch_id,
            list(only_from),
        ],
    )
    return cur.rowcount > 0


# --- slices -----------------------------------------------------------------------------


async def clear_slices(conn: AsyncConnection[Any], *, batch_id: str) -> None:
    await conn.execute("DELETE FROM batch_slices WHERE batch_id = %s", [batch_id])


async def insert_slices(
    conn: AsyncConnection[Any], *, batch_id: str, slices: list[tuple[int, int, int, int]]
) -> None:
    """`slices`: (slice_no, start_line, start_offset, n_lines)."""
    if not slices:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO batch_slices (batch_id, slice_no, start_line, start_offset, n_lines)
               VALUES (%s, %s, %s, %s, %s)""",
            [(batch_id, *s) for s in slices],
        )


async def next_slice(conn: AsyncConnection[Any], *, batch_id: str) -> Row | None:
    return await (
        await conn.execute(
            """SELECT * FROM batch_slices WHERE batch_id = %s AND NOT done
               ORDER BY slice_no LIMIT 1""",
            [batch_id],
        )
    ).fetchone()


async def slices(conn: AsyncConnection[Any], *, batch_id: str) -> list[Row]:
    """Every slice of a batch, in order (a few hundred rows even for a very large batch)."""
    return await (
        await conn.execute(
            "SELECT * FROM batch_slices WHERE batch_id = %s ORDER BY slice_no", [batch_id]
        )
    ).fetchall()


async def finish_slice(
    conn: AsyncConnection[Any],
    *,
    batch_id: str,
    slice_no: int,
    completed: int,
    failed: int,
    tokens: int,
) -> int:
    """Record a slice as done and add its counts to the batch, once; return lines done so far.

    Runs in the caller's transaction; a slice replayed after a crash adds nothing twice.
    """
    cur = await conn.execute(
        """UPDATE batch_slices SET done = true, completed = %s, failed = %s
           WHERE batch_id = %s AND slice_no = %s AND NOT done""",
        [completed, failed, batch_id, slice_no],
    )
    if cur.rowcount:
        await conn.execute(
            """UPDATE batches SET completed = completed + %s, failed = failed + %s,
                      input_tokens = input_tokens + %s WHERE id = %s""",
            [completed, failed, tokens, batch_id],
        )
    row = await (
        await conn.execute(
            "SELECT coalesce(sum(n_lines), 0) AS n FROM batch_slices WHERE batch_id = %s AND done",
            [batch_id],
        )
    ).fetchone()
    assert row is not None
    return int(row["n"])


async def fail_batch_of_job(conn: AsyncConnection[Any], *, job_id: str, message: str) -> None:
    """The job behind a batch failed outside the task (the sweeper gave up): fail the batch."""
    await conn.execute(
        """UPDATE batches SET status = 'failed', failed_at = clock_timestamp(),
                  errors = %s
           WHERE job_id = %s AND status <> ALL(%s)""",
        [
            Jsonb({"object": "list", "data": [{"code": "server_error", "message": message}]}),
            job_id,
            list(FINAL),
        ],
    )


async def settle_with_job(conn: AsyncConnection[Any], *, batch_id: str) -> bool:
    """End a batch whose job ended without its task (cancelled through /v1/jobs while queued)."""
    cur = await conn.execute(
        """UPDATE batches b SET
               status = CASE j.status WHEN 'cancelled' THEN 'cancelled' ELSE 'failed' END,
               cancelled_at = CASE j.status WHEN 'cancelled' THEN clock_timestamp() END,
               failed_at = CASE j.status WHEN 'failed' THEN clock_timestamp() END,
               errors = CASE j.status WHEN 'failed' THEN jsonb_build_object(
                   'object', 'list', 'data', jsonb_build_array(jsonb_build_object(
                       'code', coalesce(j.error->>'code', 'server_error'),
                       'message', coalesce(j.error->>'message', 'the job failed'))))
                   ELSE b.errors END
           FROM jobs j
           WHERE b.id = %s AND j.id = b.job_id AND j.status IN ('cancelled', 'failed')
             AND b.status <> ALL(%s)""",
        [batch_id, list(FINAL)],
    )
    return cur.rowcount > 0
