"""Queries on /v1/batches rows (their checkpointed slices: store/batch_slices.py).

A batch's status moves validating → in_progress → finalizing → completed, or ends failed,
expired or cancelled (through cancelling). Each final status stamps its own timestamp column.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.batches import Batch, StopState
from prepshelf.store import files as files_db
from prepshelf.store.pages import Page, PageRequest, fetch_page
from prepshelf.store.rows import typed


def _batch(row: Any) -> Batch:
    return typed(Batch, row)


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
) -> Batch:
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
    return _batch(row)


async def get_batch(
    conn: AsyncConnection[Any], *, batch_id: str, project_id: str | None = None
) -> Batch | None:
    query, args = "SELECT * FROM batches WHERE id = %s", [batch_id]
    if project_id is not None:
        query += " AND project_id = %s"
        args.append(project_id)
    row = await (await conn.execute(query, args)).fetchone()
    return _batch(row) if row else None


async def get_batch_of_job(conn: AsyncConnection[Any], *, job_id: str) -> Batch | None:
    row = await (await conn.execute("SELECT * FROM batches WHERE job_id = %s", [job_id])).fetchone()
    return _batch(row) if row else None


async def input_blob_key(conn: AsyncConnection[Any], *, batch: Batch) -> str | None:
    """Where the batch's input file lies; None once the file was deleted."""
    file = await files_db.get_file(conn, project_id=batch.project_id, file_id=batch.input_file_id)
    return file.blob_key if file else None


async def stop_state(conn: AsyncConnection[Any], *, batch_id: str, job_id: str) -> StopState | None:
    """The batch's status, whether its window ended and whether its job was asked to cancel."""
    row = await (
        await conn.execute(
            """SELECT b.status, b.expires_at < clock_timestamp() AS expired,
                      j.cancel_requested
               FROM batches b JOIN jobs j ON j.id = b.job_id WHERE b.id = %s AND j.id = %s""",
            [batch_id, job_id],
        )
    ).fetchone()
    if row is None:
        return None
    return StopState(
        status=row["status"], expired=bool(row["expired"]), cancel_requested=row["cancel_requested"]
    )


async def list_batches(
    conn: AsyncConnection[Any], *, project_id: str, page: PageRequest
) -> Page[Batch]:
    result = await fetch_page(
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
    return result.map(_batch)


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


async def set_total(conn: AsyncConnection[Any], *, batch_id: str, total: int) -> None:
    """The number of requests, whatever the status (a batch cancelled while validating too)."""
    await conn.execute("UPDATE batches SET total = %s WHERE id = %s", [total, batch_id])


async def set_model_if_unset(conn: AsyncConnection[Any], *, batch_id: str, model: str) -> None:
    await conn.execute(
        "UPDATE batches SET model = coalesce(model, %s) WHERE id = %s", [model, batch_id]
    )


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
