"""A bounded number of slots shared fairly between owners (projects).

An asyncio.Semaphore hands a freed slot to whoever waited longest: with many files of one
project waiting to parse, a file of another project queues behind all of them. Here a freed
slot goes to the waiter whose owner holds the fewest slots at that moment (first come among
equals), so a project with one file waits for one slot to free, not for a backlog to drain.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _Waiter:
    owner: str
    seq: int
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class FairSlots:
    def __init__(self, slots: int) -> None:
        self._free = max(1, slots)
        self._held: Counter[str] = Counter()
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()

    def held(self, owner: str) -> int:
        return self._held[owner]

    @asynccontextmanager
    async def hold(self, owner: str) -> AsyncIterator[None]:
        await self._acquire(owner)
        try:
            yield
        finally:
            self._release(owner)

    async def _acquire(self, owner: str) -> None:
        if self._free > 0 and not self._waiters:
            self._take(owner)
            return
        waiter = _Waiter(owner, next(self._seq))
        self._waiters.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._release(owner)  # granted as it was cancelled: pass the slot on
            else:
                self._waiters.remove(waiter)
            raise

    def _take(self, owner: str) -> None:
        self._free -= 1
        self._held[owner] += 1

    def _release(self, owner: str) -> None:
        self._free += 1
        self._held[owner] -= 1
        if self._held[owner] <= 0:
            del self._held[owner]
        while self._free > 0 and self._waiters:
            nxt = min(self._waiters, key=lambda w: (self._held[w.owner], w.seq))
            self._waiters.remove(nxt)
            self._take(nxt.owner)
            nxt.granted.set_result(None)
