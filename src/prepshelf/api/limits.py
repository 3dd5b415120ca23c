"""Per-key request limits of one API process: a token bucket and two in-flight counters.

- Rate: each key has a bucket of `rate_limit_burst` tokens refilled at `rate_limit_per_s`;
  a request takes one, and an empty bucket answers 429 with the wait for the next token.
- Concurrency: at most `key_max_concurrent` requests of one key are in flight at once, so a
  burst from one caller (a thousand uploads at once) cannot fill the event loop and the
  connection pool ahead of everyone else's requests; the excess is refused at once (429,
  Retry-After: 1) before its body is read.
- Event streams live for minutes and count apart: at most `key_max_streams` open per key.

The state is in memory, per process: with N API processes behind a balancer a key gets up to
N times these limits. Only authenticated keys get an entry, so the table is bounded by the
number of keys in use; idle entries are dropped when it grows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from prepshelf.errors import RateLimitError

Refusal = Literal["rate", "concurrency", "streams"]
_PRUNE_ABOVE = 10_000


@dataclass
class _KeyState:
    tokens: float
    updated: float
    in_flight: int = 0
    streams: int = 0


class Refused(RateLimitError):
    """A RateLimitError that also says which limit refused (a closed set, for metrics)."""

    def __init__(self, message: str, *, retry_after_s: float, reason: Refusal) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.reason: Refusal = reason


@dataclass
class KeyLimiter:
    rate_per_s: float  # 0 = no rate limit
    burst: int
    max_concurrent: int  # 0 = no limit
    max_streams: int  # 0 = no limit
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, _KeyState] = field(default_factory=dict)
    _pruned_at: float = float("-inf")

    def admit(self, subject: str, *, stream: bool = False) -> Callable[[], None]:
        """Count one request of `subject` in; returns its release (call it exactly once).

        Raises `Refused` (429) when a limit is reached; a refused request takes no token.
        """
        now = self.clock()
        state = self._keys.get(subject)
        if state is None:
            if len(self._keys) >= _PRUNE_ABOVE and now - self._pruned_at >= 1:
                self._prune(now)
            state = self._keys[subject] = _KeyState(tokens=float(self.burst), updated=now)
        if self.rate_per_s > 0:
            state.tokens = min(
                float(self.burst), state.tokens + (now - state.updated) * self.rate_per_s
            )
            state.updated = now
            if state.tokens < 1 - 1e-9:  # (float noise of the clock arithmetic)
                raise Refused(
                    f"Too many requests for this API key: the limit is {self.rate_per_s:g} "
                    f"per second (bursts of {self.burst})",
                    retry_after_s=(1 - state.tokens) / self.rate_per_s,
                    reason="rate",
                )
        if stream:
            if self.max_streams and state.streams >= self.max_streams:
                raise Refused(
                    f"Too many open event streams for this API key (at most "
                    f"{self.max_streams}); close one first",
                    retry_after_s=5,
                    reason="streams",
                )
            state.streams += 1
        else:
            if self.max_concurrent and state.in_flight >= self.max_concurrent:
                raise Refused(
                    f"Too many requests in flight for this API key (at most "
                    f"{self.max_concurrent} at once); retry when one has finished",
                    retry_after_s=1,
                    reason="concurrency",
                )
            state.in_flight += 1
        if self.rate_per_s > 0:
            state.tokens -= 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            if stream:
                state.streams -= 1
            else:
                state.in_flight -= 1

        return release

    def in_flight(self, subject: str) -> tuple[int, int]:
        """(requests, streams) of `subject` now in flight."""
        state = self._keys.get(subject)
        return (state.in_flight, state.streams) if state else (0, 0)

    def _prune(self, now: float) -> None:
        """Forget keys with nothing in flight whose bucket has refilled (no state lost)."""
        self._pruned_at = now
        for subject, state in list(self._keys.items()):
            full = self.rate_per_s <= 0 or (
                state.tokens + (now - state.updated) * self.rate_per_s >= self.burst
            )
            if not state.in_flight and not state.streams and full:
                del self._keys[subject]
