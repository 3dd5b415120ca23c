"""Eval runs and their per-question output items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.evals import Eval, EvalRun, OutputItem, TestingCriterion
from prepshelf.store.evals import criteria_of
from prepshelf.store.pages import PageRequest, fetch_page

Conn = AsyncConnection[Any]

# --- runs ---------------------------------------------------------------------------------

_RUN_SELECT = """
    SELECT r.*, j.id AS job_id, j.status AS job_status, j.error AS job_error,
           j.schedule_id AS schedule_id
    FROM eval_runs r LEFT JOIN jobs j ON j.eval_run_id = r.id"""


def _run(row: dict[str, Any]) -> EvalRun:
    return EvalRun(
        id=row["id"],
        eval_id=row["eval_id"],
        project_id=row["project_id"],
        name=row["name"],
        vector_store_id=row["vector_store_id"],
        testing_criteria=criteria_of(row["testing_criteria"]),
        metadata=row["metadata"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        embedding_model=row["embedding_model"],
        store_files=row["store_files"],
        store_fingerprint=row["store_fingerprint"],
        settings_fingerprint=row["settings_fingerprint"],
        store_changed=row["store_changed"],
        settings_changed=row["settings_changed"],
        result_counts=row["result_counts"],
        per_testing_criteria_results=row["per_testing_criteria_results"],
        job_id=row["job_id"],
        job_status=row["job_status"],
        error=row["job_error"],
        schedule_id=row["schedule_id"],
    )


async def insert_run(
    conn: Conn,
    *,
    run_id: str,
    evaluation: Eval,
    name: str | None,
    vector_store_id: str,
    metadata: dict[str, str],
) -> None:
    await conn.execute(
        """INSERT INTO eval_runs (id, eval_id, project_id, name, vector_store_id,
                                  testing_criteria, metadata)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        [
            run_id,
            evaluation.id,
            evaluation.project_id,
            name,
            vector_store_id,
            Jsonb([c.to_json() for c in evaluation.testing_criteria]),
            Jsonb(metadata),
        ],
    )


async def get_run(conn: Conn, *, run_id: str, eval_id: str | None = None) -> EvalRun | None:
    query, args = f"{_RUN_SELECT} WHERE r.id = %s", [run_id]
    if eval_id is not None:
        query += " AND r.eval_id = %s"
        args.append(eval_id)
    row = await (await conn.execute(query, args)).fetchone()
    return _run(row) if row else None


async def list_runs(
    conn: Conn, *, eval_id: str, page: PageRequest, status_in: list[str] | None = None
) -> tuple[list[EvalRun], bool]:
    where = "r.eval_id = %s"
    params: list[Any] = [eval_id]
    if status_in is not None:
        where += " AND j.status = ANY(%s)"
        params.append(status_in)
    result = await fetch_page(
        conn,
        select=_RUN_SELECT,
        where=where,
        params=params,
        key_created="r.created_at",
        key_id="r.id",
        cursor_lookup="SELECT created_at FROM eval_runs WHERE eval_id = %s AND id = %s",
        cursor_params=[eval_id],
        page=page,
    )
    return [_run(r) for r in result.rows], result.has_more


async def delete_run(conn: Conn, *, eval_id: str, run_id: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM eval_runs WHERE id = %s AND eval_id = %s", [run_id, eval_id]
    )
    return cur.rowcount > 0


async def previous_completed_run(
    conn: Conn, *, eval_id: str, before: datetime, run_id: str
) -> EvalRun | None:
    """The latest completed run created before this one (what a chart compares it with)."""
    row = await (
        await conn.execute(
            f"""{_RUN_SELECT}
                WHERE r.eval_id = %s AND r.completed_at IS NOT NULL
                  AND (r.created_at, r.id) < (%s, %s)
                ORDER BY r.created_at DESC, r.id DESC LIMIT 1""",
            [eval_id, before, run_id],
        )
    ).fetchone()
    return _run(row) if row else None


async def start_run(
    conn: Conn,
    *,
    run_id: str,
    embedding_model: str,
    store_files: int,
    store_fingerprint: str,
    settings_fingerprint: str,
    testing_criteria: tuple[TestingCriterion, ...],
) -> None:
    """Record what the run searches, and with which settings (resolved), as it starts."""
    await conn.execute(
        """UPDATE eval_runs SET embedding_model = %s, store_files = %s,
                  store_fingerprint = %s, settings_fingerprint = %s, testing_criteria = %s
           WHERE id = %s""",
        [
            embedding_model,
            store_files,
            store_fingerprint,
            settings_fingerprint,
            Jsonb([c.to_json() for c in testing_criteria]),
            run_id,
        ],
    )


async def complete_run(
    conn: Conn,
    *,
    run_id: str,
    result_counts: dict[str, int],
    per_testing_criteria_results: list[dict[str, Any]],
    store_changed: bool,
    settings_changed: bool,
) -> None:
    await conn.execute(
        """UPDATE eval_runs SET result_counts = %s, per_testing_criteria_results = %s,
                  store_changed = %s, settings_changed = %s, completed_at = clock_timestamp()
           WHERE id = %s""",
        [
            Jsonb(result_counts),
            Jsonb(per_testing_criteria_results),
            store_changed,
            settings_changed,
            run_id,
        ],
    )


# --- output items -------------------------------------------------------------------------


async def done_items(conn: Conn, *, run_id: str) -> dict[int, dict[str, Any]]:
    """Items already written (a run picked up again continues after them): item_no → row."""
    cur = await conn.execute(
        "SELECT item_no, status, results FROM eval_run_items WHERE run_id = %s", [run_id]
    )
    return {r["item_no"]: r for r in await cur.fetchall()}


async def insert_items(
    conn: Conn, *, run_id: str, items: list[tuple[str, int, str, list[dict[str, Any]]]]
) -> None:
    """(item id, item_no, status, results) rows; a replayed checkpoint changes nothing."""
    async with conn.cursor() as c:
        await c.executemany(
            """INSERT INTO eval_run_items (id, run_id, item_no, status, results)
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id, item_no) DO NOTHING""",
            [(iid, run_id, no, status, Jsonb(results)) for iid, no, status, results in items],
        )


_ITEM_SELECT = """
    SELECT i.*, r.eval_id, q.item AS question FROM eval_run_items i
    JOIN eval_runs r ON r.id = i.run_id
    JOIN eval_questions q ON q.eval_id = r.eval_id AND q.item_no = i.item_no"""


def _item(row: dict[str, Any]) -> OutputItem:
    return OutputItem(
        id=row["id"],
        run_id=row["run_id"],
        eval_id=row["eval_id"],
        item_no=row["item_no"],
        status=row["status"],
        question=row["question"],
        results=row["results"],
        created_at=row["created_at"],
    )


async def list_items(
    conn: Conn, *, run_id: str, page: PageRequest, status: str | None
) -> tuple[list[OutputItem], bool]:
    where, params = "i.run_id = %s", [run_id]
    if status is not None:
        where += " AND i.status = %s"
        params.append(status)
    result = await fetch_page(
        conn,
        select=_ITEM_SELECT,
        where=where,
        params=params,
        key_created="i.created_at",
        key_id="i.id",
        cursor_lookup="SELECT created_at FROM eval_run_items WHERE run_id = %s AND id = %s",
        cursor_params=[run_id],
        page=page,
    )
    return [_item(r) for r in result.rows], result.has_more


async def get_item(conn: Conn, *, run_id: str, item_id: str) -> OutputItem | None:
    row = await (
        await conn.execute(f"{_ITEM_SELECT} WHERE i.run_id = %s AND i.id = %s", [run_id, item_id])
    ).fetchone()
    return _item(row) if row else None


async def all_items(conn: Conn, *, run_id: str) -> list[OutputItem]:
    cur = await conn.execute(f"{_ITEM_SELECT} WHERE i.run_id = %s ORDER BY i.item_no", [run_id])
    return [_item(r) for r in await cur.fetchall()]


# --- metrics ------------------------------------------------------------------------------


async def latest_scores(conn: Conn, *, limit: int) -> list[EvalRun]:
    """The latest completed run of each of the `limit` most recently completed evals."""
    if limit <= 0:
        return []
    cur = await conn.execute(
        """SELECT * FROM (
                SELECT DISTINCT ON (r.eval_id) r.*, NULL::text AS job_id,
                       'succeeded'::text AS job_status, NULL::jsonb AS job_error,
                       NULL::text AS schedule_id
                FROM eval_runs r WHERE r.completed_at IS NOT NULL
                ORDER BY r.eval_id, r.completed_at DESC) latest
            ORDER BY completed_at DESC LIMIT %s""",
        [limit],
    )
    return [_run(r) for r in await cur.fetchall()]
