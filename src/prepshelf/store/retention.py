"""Deleting old rows in short chunks, for the retention steps of maintenance."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

_CHUNK = 5000


async def table_exists(conn: AsyncConnection[Any], name: str) -> bool:
    row = await (await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", [name])).fetchone()
    return bool(row and row["ok"])


async def delete_in_chunks(
    conn: AsyncConnection[Any], table: str, where: str, args: list[Any]
) -> int:
    """DELETE in chunks of rows (short transactions, no long lock on a busy table).

    `table` and `where` are SQL text from our own code, never from a request."""
    total = 0
    while True:
        cur = await conn.execute(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {table} WHERE {where} LIMIT {_CHUNK}))",
            args,
        )
        total += cur.rowcount
        if cur.rowcount < _CHUNK:
            return total
