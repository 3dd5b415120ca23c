"""One LISTEN connection per API process, fanned out to every open event stream.

A notification only says "something new": each subscriber then reads its own rows from the
database. Wake-ups are coalesced (a subscriber's queue holds at most one), so a burst of a
thousand events costs a busy stream one read, and an idle stream costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg

from prepshelf.store import events as events_db

log = logging.getLogger(__name__)


class EventsHub:
    def __init__(self, database_url: str, *, reconnect_delay_s: float = 1.0) -> None:
        self._url = database_url
        self._reconnect_delay_s = reconnect_delay_s
        self._subscribers: set[asyncio.Queue[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="events-hub")
        # Streams opened before the LISTEN is in place would still work (they read the table
        # first), but waiting briefly makes start-up order predictable.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._wake_all()  # let open streams notice shutdown promptly

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[None]]:
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _wake_all(self) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def _listen_forever(self) -> None:
        while True:
            try:
                conn: Any = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                async with conn:
                    notifies = await events_db.listen(conn)
                    self.connected.set()
                    # Anything committed while we were away is found by this wake-up's read.
                    self._wake_all()
                    async for _ in notifies:
                        self._wake_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost or refused: keep trying, streams re-read
                log.warning("events LISTEN connection lost (%s); reconnecting", exc)
            self.connected.clear()
            await asyncio.sleep(self._reconnect_delay_s)
