"""A transcribing job's segment answers, kept as they arrive (migration 0071)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class SegmentAnswer:
    segment: int  # 0-based
    start_s: float
    end_s: float
    answer: dict[str, Any]


async def keep_segment(conn: AsyncConnection[Any], *, job_id: str, kept: SegmentAnswer) -> None:
    await conn.execute(
        """INSERT INTO transcript_segments (job_id, segment, start_s, end_s, answer)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id, segment) DO NOTHING""",
        [job_id, kept.segment, kept.start_s, kept.end_s, Jsonb(kept.answer)],
    )


async def kept_segments(conn: AsyncConnection[Any], *, job_id: str) -> list[SegmentAnswer]:
    cur = await conn.execute(
        """SELECT segment, start_s, end_s, answer FROM transcript_segments
           WHERE job_id = %s ORDER BY segment""",
        [job_id],
    )
    return [
        SegmentAnswer(r["segment"], float(r["start_s"]), float(r["end_s"]), r["answer"])
        for r in await cur.fetchall()
    ]


async def forget_segments(conn: AsyncConnection[Any], *, job_id: str) -> None:
    """Once the transcript's chunks are stored (in that transaction)."""
    await conn.execute("DELETE FROM transcript_segments WHERE job_id = %s", [job_id])
