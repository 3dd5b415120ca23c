"""Evals and their questions, and what a run of one finds in its store."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.evals import Eval, Question, TestingCriterion
from prepshelf.store.pages import PageRequest, fetch_page

Conn = AsyncConnection[Any]


def criteria_of(data: list[dict[str, Any]]) -> tuple[TestingCriterion, ...]:
    return tuple(TestingCriterion.from_json(c) for c in data)


def _eval(row: dict[str, Any]) -> Eval:
    return Eval(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        vector_store_id=row["vector_store_id"],
        data_source_config=row["data_source_config"],
        testing_criteria=criteria_of(row["testing_criteria"]),
        metadata=row["metadata"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- evals --------------------------------------------------------------------------------


async def insert_eval(
    conn: Conn,
    *,
    eval_id: str,
    project_id: str,
    name: str | None,
    vector_store_id: str | None,
    data_source_config: dict[str, Any],
    testing_criteria: tuple[TestingCriterion, ...],
    metadata: dict[str, str],
    questions: list[Question],
) -> Eval:
    cur = await conn.execute(
        """INSERT INTO evals (id, project_id, name, vector_store_id, data_source_config,
                              testing_criteria, metadata)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        [
            eval_id,
            project_id,
            name,
            vector_store_id,
            Jsonb(data_source_config),
            Jsonb([c.to_json() for c in testing_criteria]),
            Jsonb(metadata),
        ],
    )
    row = await cur.fetchone()
    assert row is not None
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO eval_questions (eval_id, item_no, item) VALUES (%s, %s, %s)",
            [(eval_id, q.item_no, Jsonb(q.to_json())) for q in questions],
        )
    return _eval(row)


async def get_eval(conn: Conn, *, project_id: str, eval_id: str) -> Eval | None:
    row = await (
        await conn.execute(
            "SELECT * FROM evals WHERE id = %s AND project_id = %s", [eval_id, project_id]
        )
    ).fetchone()
    return _eval(row) if row else None


async def list_evals(conn: Conn, *, project_id: str, page: PageRequest) -> tuple[list[Eval], bool]:
    result = await fetch_page(
        conn,
        select="SELECT * FROM evals",
        where="project_id = %s",
        params=[project_id],
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM evals WHERE project_id = %s AND id = %s",
        cursor_params=[project_id],
        page=page,
    )
    return [_eval(r) for r in result.rows], result.has_more


async def update_eval(
    conn: Conn,
    *,
    eval_id: str,
    name: str | None,
    vector_store_id: str | None,
    testing_criteria: tuple[TestingCriterion, ...],
    metadata: dict[str, str],
) -> Eval:
    cur = await conn.execute(
        """UPDATE evals SET name = %s, vector_store_id = %s, testing_criteria = %s,
                  metadata = %s, updated_at = clock_timestamp()
           WHERE id = %s RETURNING *""",
        [
            name,
            vector_store_id,
            Jsonb([c.to_json() for c in testing_criteria]),
            Jsonb(metadata),
            eval_id,
        ],
    )
    row = await cur.fetchone()
    assert row is not None
    return _eval(row)


async def delete_eval(conn: Conn, *, project_id: str, eval_id: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM evals WHERE id = %s AND project_id = %s", [eval_id, project_id]
    )
    return cur.rowcount > 0


async def questions(conn: Conn, *, eval_id: str) -> list[Question]:
    cur = await conn.execute(
        "SELECT item_no, item FROM eval_questions WHERE eval_id = %s ORDER BY item_no",
        [eval_id],
    )
    return [Question.from_json(r["item_no"], r["item"]) for r in await cur.fetchall()]


# --- what a run searches ------------------------------------------------------------------


async def store_snapshot(conn: Conn, *, store_id: str) -> tuple[int, str]:
    """(completed files, fingerprint of which files they are): a replaced or removed file
    changes the fingerprint, so a chart can mark runs where the store's contents changed."""
    row = await (
        await conn.execute(
            """SELECT count(*) AS n,
                      md5(coalesce(string_agg(file_id, ',' ORDER BY file_id), '')) AS digest
               FROM vector_store_files WHERE vector_store_id = %s AND status = 'completed'""",
            [store_id],
        )
    ).fetchone()
    assert row is not None
    return int(row["n"]), str(row["digest"])


async def relevant_in_store(conn: Conn, *, store_id: str, question: Question) -> int:
    """How many completed files of the store are right answers to `question` (the same rule
    as `Question.is_relevant`: a listed filename or source path, or attributes holding one
    expected map)."""
    row = await (
        await conn.execute(
            """SELECT count(*) AS n FROM vector_store_files vsf JOIN files f ON f.id = vsf.file_id
               WHERE vsf.vector_store_id = %s AND vsf.status = 'completed'
                 AND (f.filename = ANY(%s)
                      OR (jsonb_typeof(vsf.attributes -> 'source') = 'string'
                          AND vsf.attributes ->> 'source' = ANY(%s))
                      OR vsf.attributes @> ANY(%s::jsonb[]))""",
            [
                store_id,
                list(question.expected_filenames),
                list(question.expected_filenames),
                [Jsonb(a) for a in question.expected_attributes],
            ],
        )
    ).fetchone()
    return int(row["n"]) if row else 0
