"""How the API process speaks HTTP: uvicorn's h11 protocol with a deadline for headers.

uvicorn bounds the wait *between* requests on a kept-alive connection (5 s) and the size of a
request's headers (h11: 16 KiB), but not the time a client may take to send them: a client
that opens connections and trickles header bytes would hold them (and their file
descriptors) forever. Here a connection must deliver each request's complete headers within
`header_timeout_s` of its first byte (or of the connection opening), or it is closed. Bodies
are bounded by the front gate (`api/gate.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from prepshelf.settings import Settings

MAX_HEADER_BYTES = 16 * 1024  # h11's own default, stated: larger headers are a 400


class HeaderDeadlineProtocol(H11Protocol):
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the headers are in: the gate bounds the body

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    protocol = type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout_s": settings.header_timeout_s},
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "timeout_graceful_shutdown": 5,
        "http": protocol,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
