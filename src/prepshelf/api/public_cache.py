"""Answers of public GET routes that cost work (`/readyz` reads the database, `/openapi.json`
serialises the whole schema) are served again for `public_cache_s` seconds, one render at a
time: a caller without a key looping on them costs a header parse, not a pooled connection or
a schema dump per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHED_ROUTES = frozenset({"/readyz", "/openapi.json"})
_MAX_BODY = 4 * 1024 * 1024  # a bigger answer is passed through, never kept


@dataclass
class _Answer:
    start: Message
    body: bytes
    at: float


class PublicCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._answers: dict[str, _Answer] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def applies(self, scope: Scope, template: str | None) -> bool:
        return (
            self.ttl_s > 0
            and template in CACHED_ROUTES
            and scope.get("method") == "GET"
            and not scope.get("query_string")
        )

    def _fresh(self, path: str) -> _Answer | None:
        answer = self._answers.get(path)
        return answer if answer and time.monotonic() - answer.at < self.ttl_s else None

    async def serve(
        self, path: str, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        answer = self._fresh(path)
        if answer is None:
            lock = self._locks.setdefault(path, asyncio.Lock())
            async with lock:
                answer = self._fresh(path)
                if answer is None:
                    answer = await self._render(app, scope, receive, send)
                    if answer is None:
                        return  # answered directly (streamed or too big): nothing kept
                    self._answers[path] = answer
                    return
        await send(answer.start)
        await send({"type": "http.response.body", "body": answer.body})

    async def _render(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> _Answer | None:
        start: Message | None = None
        body = bytearray()
        passthrough = False

        async def capture(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                start = message
            elif not passthrough:
                body.extend(message.get("body", b""))
                if message.get("more_body") or len(body) > _MAX_BODY:
                    passthrough = True
                    assert start is not None
                    await send(start)
                    await send({**message, "body": bytes(body)})
                    return
            if passthrough and message["type"] == "http.response.body":
                await send(message)

        await app(scope, receive, capture)
        if passthrough or start is None:
            return None
        await send(start)
        await send({"type": "http.response.body", "body": bytes(body)})
        return _Answer(start, bytes(body), time.monotonic())
