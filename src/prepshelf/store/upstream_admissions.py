"""The shared admission log of upstream requests (migration 0050; the rule: domain/admission.py).

`try_admit` runs one short transaction per attempt: it takes the upstream's advisory lock
(admissions to one upstream are serialised across every process; other upstreams do not
wait), reads the clock *after* the lock (so entries are in admission order), deletes entries
that no longer matter while it measures the window, and either writes the new entry or (only
then walking the window) answers how long to wait. The caller sleeps outside any transaction
and holds no connection meanwhile.

`now` may be given (tests drive a virtual clock); otherwise it is PostgreSQL's
`clock_timestamp()`, one clock for every worker on every host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from prepshelf.domain.admission import Admission, Refusal, WindowUsage, check_fits, judge
from prepshelf.domain.upstreams import RateLimits

_LOCK_CLASS = 0x75707374  # "upst": advisory locks (class, hashtext(upstream)) of this module

# The common path reads aggregates only (index range scans, no sort). It also deletes what no
# longer counts: entries out of the window whose slot ended (the read cannot see them anyway).
_USAGE = """
WITH pruned AS (
    DELETE FROM upstream_admissions
     WHERE upstream = %(upstream)s AND admitted_at <= %(since)s
       AND (slot_until IS NULL OR slot_until <= %(now)s)
), win AS (
    SELECT count(*) AS requests, coalesce(sum(tokens), 0) AS tokens
      FROM upstream_admissions
     WHERE upstream = %(upstream)s AND admitted_at > %(since)s
), held AS (
    SELECT count(*) AS in_flight, min(slot_until) AS first_end
      FROM upstream_admissions
     WHERE upstream = %(upstream)s AND slot_until > %(now)s
)
SELECT requests, tokens, in_flight,
       extract(epoch FROM first_end - %(now)s) AS slot_end_in_s
  FROM win, held
"""
# Only for a refused request. One more request fits once the rpm-th newest entry has left.
_REQUEST_ROOM = """
SELECT extract(epoch FROM admitted_at + make_interval(secs => %(window)s) - %(now)s) AS wait
  FROM upstream_admissions
 WHERE upstream = %(upstream)s AND admitted_at > %(since)s
 ORDER BY admitted_at DESC, id DESC
OFFSET %(skip)s LIMIT 1
"""
# The tokens fit once the oldest entry has left after which what remains plus them is <= tpm:
# for each entry, the tokens of it and of everything newer, newest first.
_TOKEN_ROOM = """
SELECT extract(epoch FROM min(admitted_at) + make_interval(secs => %(window)s) - %(now)s)
       AS wait
  FROM (SELECT admitted_at, tokens,
               sum(tokens) OVER (ORDER BY admitted_at DESC, id DESC
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS from_here
          FROM upstream_admissions
         WHERE upstream = %(upstream)s AND admitted_at > %(since)s) AS newest_first
 WHERE from_here - tokens + %(need)s <= %(tpm)s
"""


@dataclass(frozen=True)
class UpstreamLoad:
    """What one upstream has taken in the last window, for operators and job events."""

    upstream: str
    requests: int
    tokens: int
    in_flight: int


async def try_admit(
    conn: AsyncConnection[Any],
    *,
    upstream: str,
    limits: RateLimits,
    tokens: int,
    window_s: float,
    slot_s: float,
    holder: str,
    poll_s: float,
    now: datetime | None = None,
) -> Admission | Refusal:
    """Admit one request of `tokens` to `upstream` now, or say how long to wait.

    `window_s`: the counting window (60 s plus the guard); `slot_s`: how long the slot is held
    at most (the request's timeout plus a margin). Raises ExceedsLimitError for a request
    over the upstream's whole tpm. Must not run inside a caller's transaction (it commits).
    """
    check_fits(limits, tokens)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # The clock is read once the lock is held (a volatile subquery runs first), so entries
        # of one upstream are written in time order.
        await cur.execute(
            """SELECT clock_timestamp() AS now
                 FROM (SELECT pg_advisory_xact_lock(%s, hashtext(%s))) AS locked""",
            [_LOCK_CLASS, upstream],
        )
        row = await cur.fetchone()
        assert row is not None
        now = now or row["now"]
        params = {
            "upstream": upstream,
            "now": now,
            "since": now - timedelta(seconds=window_s),
            "window": window_s,
            "tpm": limits.tpm,
            "need": tokens,
            "skip": max(0, (limits.rpm or 1) - 1),
        }
        await cur.execute(_USAGE, params)
        row = await cur.fetchone()
        assert row is not None
        usage = WindowUsage(
            requests=int(row["requests"]),
            tokens=int(row["tokens"]),
            in_flight=int(row["in_flight"]),
            request_room_in_s=None,
            token_room_in_s=None,
            slot_end_in_s=_seconds(row["slot_end_in_s"]),
        )
        refusal = judge(limits, usage, tokens, poll_s=poll_s)
        if refusal is not None:
            # Refused: now find when the window limits that block it leave room.
            rooms = {}
            for limit, query in (("rpm", _REQUEST_ROOM), ("tpm", _TOKEN_ROOM)):
                if limit in refusal.blocked_by:
                    await cur.execute(query, params)
                    found = await cur.fetchone()
                    rooms[limit] = _seconds(found["wait"]) if found else None
            usage = replace(
                usage, request_room_in_s=rooms.get("rpm"), token_room_in_s=rooms.get("tpm")
            )
            return judge(limits, usage, tokens, poll_s=poll_s) or refusal
        await cur.execute(
            """INSERT INTO upstream_admissions (upstream, admitted_at, tokens, slot_until, holder)
               VALUES (%(upstream)s, %(now)s, %(need)s,
                       %(now)s + make_interval(secs => %(slot)s), %(holder)s)
               RETURNING id, admitted_at, slot_until""",
            {**params, "slot": slot_s, "holder": holder},
        )
        row = await cur.fetchone()
        assert row is not None
        return Admission(
            id=int(row["id"]),
            upstream=upstream,
            tokens=tokens,
            admitted_at=row["admitted_at"],
            slot_until=row["slot_until"],
        )


async def finish(
    conn: AsyncConnection[Any], *, admission_id: int, tokens: int | None, keep_slot: bool = False
) -> None:
    """The admitted request ended: record what it really cost (`tokens`; None keeps the
    reservation) and free its slot, unless `keep_slot` (a timed-out request may still run
    upstream: its slot then lasts until its `slot_until`)."""
    await conn.execute(
        """UPDATE upstream_admissions
              SET tokens = coalesce(%(tokens)s, tokens),
                  slot_until = CASE WHEN %(keep)s THEN slot_until END
            WHERE id = %(id)s""",
        {"id": admission_id, "tokens": tokens, "keep": keep_slot},
    )


async def load(
    conn: AsyncConnection[Any], *, upstream: str, window_s: float = 60.0
) -> UpstreamLoad:
    """Requests and tokens admitted to `upstream` in the last `window_s`, and slots held."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT count(*) FILTER (WHERE admitted_at > now() - make_interval(secs => %(w)s))
                          AS requests,
                      coalesce(sum(tokens) FILTER (
                          WHERE admitted_at > now() - make_interval(secs => %(w)s)), 0) AS tokens,
                      count(*) FILTER (WHERE slot_until > now()) AS in_flight
                 FROM upstream_admissions WHERE upstream = %(u)s""",
            {"u": upstream, "w": window_s},
        )
        row = await cur.fetchone()
    assert row is not None
    return UpstreamLoad(upstream, int(row["requests"]), int(row["tokens"]), int(row["in_flight"]))


def _seconds(value: Any) -> float | None:
    return None if value is None else max(0.0, float(value))
