"""Each upstream batch line's answer, kept as it arrives until its slice is done.

See migration 0070: the rows make a slice resumable line by line, so a worker killed while a
slice's requests are in flight costs only those requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class LineAnswer:
    line_no: int
    custom_id: str
    is_error: bool
    record: dict[str, Any]  # the output or error file's line
    input_tokens: int
    output_tokens: int


async def record_line(
    conn: AsyncConnection[Any], *, batch_id: str, slice_no: int, result: LineAnswer
) -> bool:
    """Keep one line's answer; False when the line already had one (the first one stays)."""
    cur = await conn.execute(
        """INSERT INTO batch_answers
               (batch_id, slice_no, line_no, custom_id, is_error, record,
                input_tokens, output_tokens)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (batch_id, line_no) DO NOTHING""",
        [
            batch_id,
            slice_no,
            result.line_no,
            result.custom_id,
            result.is_error,
            Jsonb(result.record),
            result.input_tokens,
            result.output_tokens,
        ],
    )
    return cur.rowcount == 1


async def slice_lines(
    conn: AsyncConnection[Any], *, batch_id: str, slice_no: int
) -> list[LineAnswer]:
    """The slice's answered lines, in input order."""
    cur = await conn.execute(
        """SELECT line_no, custom_id, is_error, record, input_tokens, output_tokens
           FROM batch_answers WHERE batch_id = %s AND slice_no = %s ORDER BY line_no""",
        [batch_id, slice_no],
    )
    return [
        LineAnswer(
            line_no=r["line_no"],
            custom_id=r["custom_id"],
            is_error=r["is_error"],
            record=r["record"],
            input_tokens=int(r["input_tokens"]),
            output_tokens=int(r["output_tokens"]),
        )
        for r in await cur.fetchall()
    ]


async def forget_slice(conn: AsyncConnection[Any], *, batch_id: str, slice_no: int) -> None:
    """Drop a done slice's rows (in the transaction that marks it done)."""
    await conn.execute(
        "DELETE FROM batch_answers WHERE batch_id = %s AND slice_no = %s",
        [batch_id, slice_no],
    )
