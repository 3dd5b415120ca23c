"""Admission to an upstream: the shared log's rule for letting one more request through.

Every request to an upstream, from any worker process, is first *admitted*: an entry in one
log (PostgreSQL, `store/upstream_admissions.py`) with its time, its tokens and a concurrency
*slot* that it holds until it ends. One more request is admitted at instant `now` when

- the entries admitted in the window `(now - W, now]` number fewer than `rpm`,
- their tokens plus this request's are at most `tpm`,
- fewer than `max_concurrent` slots are held (a slot ends when its request does, or at its
  `slot_until` if the worker died with it: kill -9 never leaks capacity for longer).

W is 60 s plus a guard (PREPSHELF_UPSTREAM_RATE_GUARD_S). This is a sliding log, exact for
every window, not a token bucket: a bucket of size `rpm` refilled at `rpm`/minute lets up to
2·rpm requests through in some 60-s window (a full bucket spent at once, then the refill). The
log checks the one condition that matters at the only instants it can break: a window's count
only grows when an entry is added, and each entry is added only if the window ending at its
own instant stays within the limits, so no window anywhere holds more. The guard covers the
time between admission here and arrival upstream: two requests admitted W apart arrive at
least 60 s apart unless their network delays differ by more than the guard.

A refused request learns how long to wait, exactly for the window limits (when enough of the
oldest entries will have left the window) and as a short poll for a slot (slots end when calls
do, which nobody can predict). The caller sleeps holding no database connection and asks
again; another caller may have taken the room meanwhile, so "wait" is a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from prepshelf.domain.upstreams import RateLimits

WINDOW_S = 60.0  # "per minute": the window every limit is defined over
Limit = Literal["rpm", "tpm", "max_concurrent"]


class ExceedsLimitError(ValueError):
    """A request needs more tokens than its upstream allows in a whole window: never admitted."""

    def __init__(self, tokens: int, tpm: int) -> None:
        super().__init__(f"the request needs about {tokens} tokens; the limit is {tpm} a minute")
        self.tokens, self.tpm = tokens, tpm


@dataclass(frozen=True)
class Admission:
    """A request let through to an upstream: its entry in the log and the slot it holds."""

    id: int
    upstream: str
    tokens: int  # reserved now; corrected by the upstream's usage when the call ends
    admitted_at: datetime
    slot_until: datetime  # the slot ends here at the latest (a dead worker's call)


@dataclass(frozen=True)
class WindowUsage:
    """The log of one upstream as one admission sees it (all times relative to its `now`)."""

    requests: int  # entries admitted within the window
    tokens: int  # their tokens
    in_flight: int  # slots held
    request_room_in_s: float | None  # when one more request fits under rpm (if it does not)
    token_room_in_s: float | None  # when this request's tokens fit under tpm (if they do not)
    slot_end_in_s: float | None  # when the earliest held slot expires at the latest


@dataclass(frozen=True)
class Refusal:
    """Not now: ask again in `wait_s` seconds at the earliest; `blocked_by` says why."""

    wait_s: float
    blocked_by: tuple[Limit, ...]


def check_fits(limits: RateLimits, tokens: int) -> None:
    """Raise ExceedsLimitError for a request no window could ever admit."""
    if limits.tpm is not None and tokens > limits.tpm:
        raise ExceedsLimitError(tokens, limits.tpm)


def judge(limits: RateLimits, usage: WindowUsage, tokens: int, *, poll_s: float) -> Refusal | None:
    """None when a request of `tokens` may go now, else how long to wait and why.

    The window waits are exact given the log as it is (each limit, once met, stays met until
    someone else is admitted); a missing slot is waited for in polls of `poll_s`, never past
    the earliest slot's expiry.
    """
    check_fits(limits, tokens)
    blocked: list[Limit] = []
    waits: list[float] = []
    if limits.rpm is not None and usage.requests + 1 > limits.rpm:
        blocked.append("rpm")
        waits.append(usage.request_room_in_s or 0.0)
    if limits.tpm is not None and usage.tokens + tokens > limits.tpm:
        blocked.append("tpm")
        waits.append(usage.token_room_in_s or 0.0)
    if limits.max_concurrent is not None and usage.in_flight + 1 > limits.max_concurrent:
        blocked.append("max_concurrent")
        expiry = usage.slot_end_in_s if usage.slot_end_in_s is not None else poll_s
        waits.append(min(poll_s, expiry))
    if not blocked:
        return None
    return Refusal(wait_s=max(0.0, *waits), blocked_by=tuple(blocked))
