"""A batch's checkpoint: the slices validation cuts, and the custom_id check run meanwhile.

Validation writes every slice in one transaction; each slice is then marked done together
with the batch's counts, so a slice replayed after a crash adds nothing twice.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from prepshelf.domain.batches import BatchSlice, SlicePlan

Conn = AsyncConnection[Any]


def _slice(row: dict[str, Any]) -> BatchSlice:
    return BatchSlice(
        slice_no=row["slice_no"],
        start_line=row["start_line"],
        start_offset=row["start_offset"],
        n_lines=row["n_lines"],
        done=row["done"],
    )


async def clear_slices(conn: Conn, *, batch_id: str) -> None:
    await conn.execute("DELETE FROM batch_slices WHERE batch_id = %s", [batch_id])


async def insert_slices(conn: Conn, *, batch_id: str, slices: list[SlicePlan]) -> None:
    if not slices:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO batch_slices (batch_id, slice_no, start_line, start_offset, n_lines)
               VALUES (%s, %s, %s, %s, %s)""",
            [(batch_id, s.slice_no, s.start_line, s.start_offset, s.n_lines) for s in slices],
        )


async def next_slice(conn: Conn, *, batch_id: str) -> BatchSlice | None:
    row = await (
        await conn.execute(
            """SELECT * FROM batch_slices WHERE batch_id = %s AND NOT done
               ORDER BY slice_no LIMIT 1""",
            [batch_id],
        )
    ).fetchone()
    return _slice(row) if row else None


async def slices(conn: Conn, *, batch_id: str) -> list[BatchSlice]:
    """Every slice of a batch, in order (a few hundred rows even for a very large batch)."""
    rows = await (
        await conn.execute(
            "SELECT * FROM batch_slices WHERE batch_id = %s ORDER BY slice_no", [batch_id]
        )
    ).fetchall()
    return [_slice(row) for row in rows]


async def finish_slice(
    conn: Conn,
    *,
    batch_id: str,
    slice_no: int,
    completed: int,
    failed: int,
    tokens: int,
    output_tokens: int = 0,
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
                      input_tokens = input_tokens + %s, output_tokens = output_tokens + %s
               WHERE id = %s""",
            [completed, failed, tokens, output_tokens, batch_id],
        )
    return await lines_done(conn, batch_id=batch_id)


async def lines_done(conn: Conn, *, batch_id: str) -> int:
    """Request lines of the batch's done slices."""
    row = await (
        await conn.execute(
            "SELECT coalesce(sum(n_lines), 0) AS n FROM batch_slices WHERE batch_id = %s AND done",
            [batch_id],
        )
    ).fetchone()
    assert row is not None
    return int(row["n"])


# --- custom_id uniqueness -----------------------------------------------------------------
# Checked in a temporary table inside validation's transaction, not in worker memory.


async def start_custom_id_check(conn: Conn) -> None:
    """Open the check; it lives until the caller's transaction ends."""
    await conn.execute(
        "CREATE TEMP TABLE batch_custom_ids (custom_id text PRIMARY KEY) ON COMMIT DROP"
    )


async def first_seen_custom_ids(conn: Conn, *, custom_ids: list[str]) -> list[str]:
    """Record `custom_ids`; return those not seen before, each once however often given."""
    cur = await conn.execute(
        """INSERT INTO batch_custom_ids SELECT unnest(%s::text[])
           ON CONFLICT DO NOTHING RETURNING custom_id""",
        [custom_ids],
    )
    return [row["custom_id"] for row in await cur.fetchall()]
