"""The shared admission log of upstream requests (migration 0050; the rule: domain/admission.py).

`try_admit` runs one short transaction per attempt: it takes the upstream's advisory lock
(admissions to one upstream are serialised across every process; other upstreams do not
wait), reads the clock *after* the lock (so entries are in admission order), deletes entries
that no longer matter, measures the window and either writes the new entry or answers how long
to wait. The caller sleeps outside any transaction and holds no connection meanwhile.

`now` may be given (tests drive a virtual clock); otherwise it is PostgreSQL's
`clock_timestamp()`, one clock for every worker on every host.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from prepshelf.domain.admission import Admission, Refusal, WindowUsage, check_fits, judge
from prepshelf.domain.upstreams import RateLimits

_LOCK_CLASS = 0x75707374  # "upst": advisory locks (class, hashtext(upstream)) of this module

_USAGE = """
WITH log AS (
    SELECT id, admitted_at, tokens, slot_until,
           admitted_at > %(now)s - make_interval(secs => %(window)s) AS in_window
      FROM upstream_admissions
     WHERE upstream = %(upstream)s
), win AS (
    -- For each entry: how many requests and tokens it and every later entry hold, i.e. what
    -- is left in the window once it and everything older have left.
    SELECT admitted_at, tokens,
           count(*) OVER newer_first AS from_here_requests,
           sum(tokens) OVER newer_first AS from_here_tokens
      FROM log
     WHERE in_window
    WINDOW newer_first AS (ORDER BY admitted_at DESC, id DESC
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT
    (SELECT count(*) FROM win) AS requests,
    (SELECT coalesce(sum(tokens), 0) FROM win) AS tokens,
    (SELECT count(*) FROM log WHERE slot_until > %(now)s) AS in_flight,
    (SELECT extract(epoch FROM min(slot_until) - %(now)s)
       FROM log WHERE slot_until > %(now)s) AS slot_end_in_s,
    -- One more request fits once the entry leaves whose later entries number rpm - 1.
    (SELECT extract(epoch FROM min(admitted_at)
                               + make_interval(secs => %(window)s) - %(now)s)
       FROM win WHERE from_here_requests <= %(rpm)s) AS request_room_in_s,
    -- The tokens fit once the entry leaves after which what remains plus them is <= tpm.
    (SELECT extract(epoch FROM min(admitted_at)
                               + make_interval(secs => %(window)s) - %(now)s)
       FROM win WHERE from_here_tokens - tokens + %(need)s <= %(tpm)s) AS token_room_in_s
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
        await cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_LOCK_CLASS, upstream])
        if now is None:
            await cur.execute("SELECT clock_timestamp() AS now")
            row = await cur.fetchone()
            assert row is not None
            now = row["now"]
        params = {
            "upstream": upstream,
            "now": now,
            "window": window_s,
            "rpm": limits.rpm,
            "tpm": limits.tpm,
            "need": tokens,
        }
        await cur.execute(
            """DELETE FROM upstream_admissions
                WHERE upstream = %(upstream)s
                  AND admitted_at <= %(now)s - make_interval(secs => %(window)s)
                  AND (slot_until IS NULL OR slot_until <= %(now)s)""",
            params,
        )
        await cur.execute(_USAGE, params)
        row = await cur.fetchone()
        assert row is not None
        usage = WindowUsage(
            requests=int(row["requests"]),
            tokens=int(row["tokens"]),
            in_flight=int(row["in_flight"]),
            request_room_in_s=_seconds(row["request_room_in_s"]),
            token_room_in_s=_seconds(row["token_room_in_s"]),
            slot_end_in_s=_seconds(row["slot_end_in_s"]),
        )
        refusal = judge(limits, usage, tokens, poll_s=poll_s)
        if refusal is not None:
            return refusal
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
