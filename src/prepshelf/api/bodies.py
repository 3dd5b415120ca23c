"""Request bodies as the front gate lets them in: capped in size, bounded in time.

`BodyReader` wraps an ASGI `receive`:
- it knows whether the body has been read to its end (`complete`; a response sent before
  that must close the connection: the unread rest cannot be told apart from the next
  request);
- while the body is still arriving, each wait is bounded by `idle_s` and all of them together
  by `total_s` (408); past its end, `receive` is passed through untouched, so a long response
  (an event stream) can still wait for the client to leave;
- it refuses more than `max_bytes` (413).

`buffer` reads a small body whole (JSON routes), so that a route only ever sees a complete,
capped body; uploads stream through `receive` instead.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope

from prepshelf.errors import PayloadTooLargeError, RequestTimeoutError


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def declared_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def has_body(scope: Scope) -> bool:
    """HTTP/1.1: a request has a body iff it says so (Content-Length > 0 or chunked)."""
    if header(scope, b"transfer-encoding") is not None:
        return True
    length = declared_length(scope)
    return length is not None and length > 0


def is_multipart(scope: Scope) -> bool:
    return (header(scope, b"content-type") or "").strip().lower().startswith("multipart/")


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


class BodyReader:
    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        *,
        max_bytes: int,
        idle_s: float,
        total_s: float,
    ) -> None:
        self._receive = receive
        self._declared = declared_length(scope)
        self.max_bytes = max_bytes
        self._idle_s = idle_s
        self._total_s = total_s
        self._deadline: float | None = None
        self.received = 0
        self.complete = not has_body(scope)  # the body was read to its end
        self.given_up = False  # the rest will never be read (timeout, too large, answered)
        self.answered = False  # a response has started

    async def receive(self) -> Message:
        if self.complete or self.given_up:
            return await self._receive()
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._total_s
        wait_s = min(self._idle_s, self._deadline - loop.time())
        try:
            if wait_s <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(self._receive(), timeout=wait_s)
        except TimeoutError:
            self.given_up = True  # what remains is never read; the response closes the line
            raise RequestTimeoutError(self._timeout_message(loop.time())) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
            if self.received > self.max_bytes:
                self.given_up = not self.complete
                raise PayloadTooLargeError(
                    f"The request body is larger than {self.max_bytes} bytes"
                )
        else:
            self.complete = True  # http.disconnect: nothing more will come
        return message

    def _timeout_message(self, now: float) -> str:
        assert self._deadline is not None
        if now >= self._deadline - 0.001:
            return f"The request body did not arrive within {self._total_s:g} seconds"
        return f"The request body stalled: nothing arrived for {self._idle_s:g} seconds"

    async def drain(self, *, limit: int, within_s: float) -> None:
        """Read and drop a small body (declared at most `limit` bytes) if it all arrives within
        `within_s`, so that a refusal can keep the connection: closing one with unread bytes
        makes the kernel reset it, and the client may lose the answer. Anything bigger,
        chunked or slower is left unread (the answer then closes the connection)."""
        if self.complete or self.given_up or self._declared is None or self._declared > limit:
            return
        try:
            async with asyncio.timeout(within_s):
                while not self.complete:
                    message = await self._receive()
                    if message["type"] != "http.request" or not message.get("more_body"):
                        self.complete = True
        except TimeoutError:
            self.given_up = True

    async def buffer(self) -> bytes:
        """Read the whole (small) body; ClientGone if the client leaves first."""
        body = bytearray()
        while not self.complete and not self.given_up:
            message = await self.receive()
            if message["type"] != "http.request":
                raise ClientGone
            body += message.get("body", b"")
        return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that returns `body` once, then whatever the client sends (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
