"""Vector search over a store's chunks, with OpenAI-style attribute filters."""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.errors import InvalidRequestError

Row = dict[str, Any]

_COMPARE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# A hit's attributes: its file's, with its chunk's own (page, page_end, ocr, ocr_confidence)
# over them; filters see the same merged object. Needs `vsf` and `c` in the query.
HIT_ATTRIBUTES = "(vsf.attributes || coalesce(c.attributes, '{}'::jsonb))"
# Hard ceilings whatever the caller passes: `filter_sql` recurses once per level.
MAX_FILTER_DEPTH = 64
MAX_FILTER_CONDITIONS = 10_000
MAX_LIST_VALUES = 1000  # values of one in / nin


def check_filter_shape(
    flt: Any, *, max_depth: int = MAX_FILTER_DEPTH, max_conditions: int = MAX_FILTER_CONDITIONS
) -> None:
    """Refuse filters nested deeper than `max_depth` or holding more than `max_conditions`
    filter objects, walking them without recursion (any depth the JSON parser let through)."""
    max_depth = min(max_depth, MAX_FILTER_DEPTH)
    max_conditions = min(max_conditions, MAX_FILTER_CONDITIONS)
    stack: list[tuple[Any, int, str]] = [(flt, 1, "filters")]
    seen = 0
    while stack:
        node, depth, param = stack.pop()
        seen += 1
        if depth > max_depth:
            raise InvalidRequestError(
                f"Filters may be nested at most {max_depth} levels deep", param=param
            )
        if not isinstance(node, dict) or node.get("type") not in ("and", "or"):
            continue
        parts = node.get("filters")
        if not isinstance(parts, list):
            continue  # filter_sql names the mistake
        if seen + len(stack) + len(parts) > max_conditions:
            raise InvalidRequestError(
                f"A filter may hold at most {max_conditions} conditions", param="filters"
            )
        stack.extend((p, depth + 1, f"{param}.filters[{i}]") for i, p in enumerate(parts))


def _comparison(flt: dict[str, Any], param: str, args: list[Any]) -> str:
    key, op, value = flt.get("key"), flt.get("type"), flt.get("value")
    if not isinstance(key, str) or not key:
        raise InvalidRequestError("A comparison filter needs a string 'key'", param=f"{param}.key")
    attr = f"({HIT_ATTRIBUTES} -> %s)"
    if op in ("eq", "ne"):
        if isinstance(value, list | dict) or value is None:
            raise InvalidRequestError(
                f"'{op}' compares with a string, number or boolean", param=f"{param}.value"
            )
        args += [key, Jsonb(value)]
        return f"{attr} = %s" if op == "eq" else f"{attr} IS DISTINCT FROM %s"
    if op in _COMPARE:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidRequestError(
                f"'{op}' compares with a number or a string", param=f"{param}.value"
            )
        if isinstance(value, str):
            args += [key, key, value]
            return (
                f"(jsonb_typeof{attr} = 'string' AND ({HIT_ATTRIBUTES} ->> %s) {_COMPARE[op]} %s)"
            )
        args += [key, key, value]
        return (
            f"(jsonb_typeof{attr} = 'number' AND "
            f"({HIT_ATTRIBUTES} ->> %s)::numeric {_COMPARE[op]} %s)"
        )
    if op in ("in", "nin"):
        if isinstance(value, list) and len(value) > MAX_LIST_VALUES:
            raise InvalidRequestError(
                f"'{op}' takes at most {MAX_LIST_VALUES} values", param=f"{param}.value"
            )
        if not isinstance(value, list) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
        ):
            raise InvalidRequestError(
                f"'{op}' needs a list of strings or numbers", param=f"{param}.value"
            )
        args += [key, [Jsonb(v) for v in value]]
        clause = f"{attr} = ANY(%s::jsonb[])"
        return clause if op == "in" else f"NOT coalesce({clause}, false)"
    raise InvalidRequestError(
        f"Unknown filter type {op!r}; expected eq, ne, gt, gte, lt, lte, in, nin, and, or",
        param=f"{param}.type",
    )


def filter_sql(flt: dict[str, Any] | None, args: list[Any], param: str = "filters") -> str:
    """Translate a ComparisonFilter / CompoundFilter into SQL over a hit's attributes.

    The route checks the shape first with the configured limits (`check_filter_shape`); the
    hard ceilings are checked here again, so the recursion below is always shallow."""
    check_filter_shape(flt)
    return _filter_sql(flt, args, param)


def _filter_sql(flt: Any, args: list[Any], param: str) -> str:
    if flt is None:
        return "true"
    if not isinstance(flt, dict):
        raise InvalidRequestError("A filter must be an object", param=param)
    if flt.get("type") in ("and", "or"):
        parts = flt.get("filters")
        if not isinstance(parts, list) or not parts:
            raise InvalidRequestError(
                "A compound filter needs a non-empty 'filters' list", param=f"{param}.filters"
            )
        joiner = " AND " if flt["type"] == "and" else " OR "
        sql = (_filter_sql(p, args, f"{param}.filters[{i}]") for i, p in enumerate(parts))
        return "(" + joiner.join(sql) + ")"
    return _comparison(flt, param, args)


async def search_chunks(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    dimensions: int,
    query_vector: np.ndarray,
    limit: int,
    filters: dict[str, Any] | None,
    score_threshold: float,
    ef_search: int = 200,
) -> list[Row]:
    """Top `limit` completed chunks by cosine similarity, best first.

    `ef_search` is the HNSW candidate list size (`PREPSHELF_SEARCH_EF_SEARCH`): higher finds
    more of the true nearest chunks and costs time (bench/search_scale.py measures both).
    """
    args: list[Any] = []
    where = filter_sql(filters, args)
    dims = int(dimensions)  # an int from our own table: safe to inline for the index cast
    sql = f"""
        SELECT * FROM (
            SELECT c.file_id, f.filename, {HIT_ATTRIBUTES} AS attributes, c.text, c.chunk_index,
                   1 - (c.embedding::vector({dims}) <=> %s::vector({dims})) AS score
            FROM chunks c
            JOIN vector_store_files vsf
              ON vsf.vector_store_id = c.vector_store_id AND vsf.file_id = c.file_id
            JOIN files f ON f.id = c.file_id
            WHERE c.vector_store_id = %s AND vector_dims(c.embedding) = {dims}
              AND vsf.status = 'completed' AND {where}
            ORDER BY c.embedding::vector({dims}) <=> %s::vector({dims})
            LIMIT %s) hits
        WHERE score >= %s ORDER BY score DESC"""
    async with conn.transaction():
        # Filtered HNSW scans keep going until enough rows pass the filter (pgvector >= 0.8).
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # An int from Settings (validated 1..1000, pgvector's range): safe to inline.
        await conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        cur = await conn.execute(
            sql, [query_vector, store_id, *args, query_vector, limit, score_threshold]
        )
        return await cur.fetchall()
