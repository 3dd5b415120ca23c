"""Per-key request limits of one API process: a token bucket, a bounded queue, stream slots.

- Rate: each key has a bucket of `rate_limit_burst` tokens refilled at `rate_limit_per_s`;
  a request takes one, and an empty bucket answers 429 with the wait for the next token.
- Concurrency: at most `key_max_concurrent` requests of one key run at once. Those beyond
  wait their turn, first come first served, before their body is read (a wait costs the
  event loop nothing); at most `key_max_waiting` wait, each at most `key_max_wait_s`, and
  beyond that the answer is 429 with a Retry-After that grows with the queue. So a burst
  from one caller (a thousand uploads at once) runs at most `key_max_concurrent` wide: it
  cannot fill the event loop and the connection pool ahead of everyone else's requests, and
  it does not turn into a storm of retries either.
- Event streams live for minutes and count apart: at most `key_max_streams` open per key.

The state is in memory, per process: with N API processes behind a balancer a key gets up to
N times these limits. Only authenticated keys get an entry, so the table is bounded by the
number of keys in use; idle entries are dropped when it grows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from prepshelf.errors import RateLimitError

Refusal = Literal["rate", "concurrency", "streams"]
Release = Callable[[], None]
_PRUNE_ABOVE = 10_000
_MAX_RETRY_AFTER_S = 60


class Refused(RateLimitError):
    """A RateLimitError that also says which limit refused (a closed set, for metrics)."""

    def __init__(self, message: str, *, retry_after_s: float, reason: Refusal) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.reason: Refusal = reason


@dataclass
class _KeyState:
    tokens: float
    updated: float
    in_flight: int = 0
    streams: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


@dataclass
class KeyLimiter:
    rate_per_s: float  # 0 = no rate limit
    burst: int
    max_concurrent: int  # 0 = no limit
    max_streams: int  # 0 = no limit
    max_waiting: int = 0  # requests of one key that may wait for a slot
    max_wait_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[int, int, int], None] | None = None  # (in flight, waiting, streams)
    _keys: dict[str, _KeyState] = field(default_factory=dict)
    _pruned_at: float = float("-inf")
    # Totals over every key, kept as they change (for the gauges).
    running: int = 0
    waiting: int = 0
    streams: int = 0

    async def admit(self, subject: str, *, stream: bool = False) -> Release:
        """Count one request of `subject` in, waiting for a slot if need be; returns its
        release (call it once; more calls change nothing). Raises `Refused` (429)."""
        state = self._state(subject)
        self._take_token(state)
        if stream:
            if self.max_streams and state.streams >= self.max_streams:
                raise Refused(
                    f"Too many open event streams for this API key (at most "
                    f"{self.max_streams}); close one first",
                    retry_after_s=5,
                    reason="streams",
                )
            state.streams += 1
            self.streams += 1
            self._changed()
            return self._releaser(state, stream=True)
        if not self.max_concurrent or (state.in_flight < self.max_concurrent and not state.waiting):
            state.in_flight += 1
            self.running += 1
            self._changed()
            return self._releaser(state, stream=False)
        await self._wait_for_slot(state)
        return self._releaser(state, stream=False)

    async def _wait_for_slot(self, state: _KeyState) -> None:
        if len(state.waiting) >= self.max_waiting:
            raise Refused(
                f"Too many requests for this API key at once ({self.max_concurrent} running, "
                f"{len(state.waiting)} waiting); retry later",
                retry_after_s=min(
                    _MAX_RETRY_AFTER_S, max(1, math.ceil(len(state.waiting) / self.max_concurrent))
                ),
                reason="concurrency",
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiting.append(turn)
        self.waiting += 1
        self._changed()
        try:
            await asyncio.wait_for(asyncio.shield(turn), timeout=self.max_wait_s)
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._pass_on(state)  # the slot came just too late: hand it to the next
            else:
                turn.cancel()
                state.waiting.remove(turn)
                self.waiting -= 1
            self._changed()
            if isinstance(exc, TimeoutError):
                raise Refused(
                    f"This API key's requests waited more than {self.max_wait_s:g} s for a "
                    "turn; retry later",
                    retry_after_s=1,
                    reason="concurrency",
                ) from None
            raise

    def _releaser(self, state: _KeyState, *, stream: bool) -> Release:
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            if stream:
                state.streams -= 1
                self.streams -= 1
            else:
                self._pass_on(state)
            self._changed()

        return release

    def _pass_on(self, state: _KeyState) -> None:
        """A slot is free: the first waiter takes it over (it stays in flight), else it is
        given back. Waiters that give up take themselves out of the queue."""
        if state.waiting:
            state.waiting.popleft().set_result(None)
            self.waiting -= 1
            return
        state.in_flight -= 1
        self.running -= 1

    def _take_token(self, state: _KeyState) -> None:
        if self.rate_per_s <= 0:
            return
        now = self.clock()
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
        state.tokens -= 1

    def _state(self, subject: str) -> _KeyState:
        state = self._keys.get(subject)
        if state is None:
            now = self.clock()
            if len(self._keys) >= _PRUNE_ABOVE and now - self._pruned_at >= 1:
                self._prune(now)
            state = self._keys[subject] = _KeyState(tokens=float(self.burst), updated=now)
        return state

    def in_flight(self, subject: str) -> tuple[int, int, int]:
        """(running, waiting, streams) of `subject` now."""
        state = self._keys.get(subject)
        return (state.in_flight, len(state.waiting), state.streams) if state else (0, 0, 0)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.running, self.waiting, self.streams)

    def _prune(self, now: float) -> None:
        """Forget keys with nothing in flight whose bucket has refilled (no state lost)."""
        self._pruned_at = now
        for subject, state in list(self._keys.items()):
            full = self.rate_per_s <= 0 or (
                state.tokens + (now - state.updated) * self.rate_per_s >= self.burst
            )
            if not state.in_flight and not state.streams and not state.waiting and full:
                del self._keys[subject]
