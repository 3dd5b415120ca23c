"""The front gate: every request is checked here, in this order, before any route runs.

1. Which route (`api/route_policy.py`): public routes pass without a key (the costly ones
   answered from a one-second cache, `api/public_cache.py`); unknown paths outside `/v1` are
   a 404 at once.
2. The key: resolved once (the principal is left in the request scope for the route's
   dependencies), *before a byte of the body is read*. No key → 401 at once.
3. The key's limits (`api/limits.py`): rate, requests running (the excess waits its turn in
   a bounded queue, body unread), open event streams → 429 with Retry-After.
4. The body: JSON routes refuse multipart (415), declared or actual bodies over
   `max_json_body_bytes` (413), and bodies that stall or take too long (408); they get the
   body whole and capped. Upload routes stream theirs, capped at the upload limit and bounded
   in time by the same idle timeout and `upload_timeout_s`.

A refusal first drops a small body already on its way (≤ 64 KiB within 5 s), so the
connection survives and the client surely reads the answer. Whenever a response starts before
the request body was read to its end, it carries `Connection: close`: the server never reads
(or buffers) the rest of a refused body. A caller
without a key can therefore cost the service one header parse and a few kilobytes of socket
buffer, whatever it sends.
"""

from __future__ import annotations

import logging

import psycopg
import psycopg_pool
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prepshelf import metrics
from prepshelf.api.auth import KeyRing, Principal, bearer_key, unauthenticated
from prepshelf.api.bodies import BodyReader, ClientGone, declared_length, is_multipart, replay
from prepshelf.api.errors import send_error
from prepshelf.api.limits import KeyLimiter, Refused
from prepshelf.api.observe import ROUTE_KEY
from prepshelf.api.public_cache import PublicCache
from prepshelf.api.route_policy import Policy, RouteTable, is_api_path
from prepshelf.api.upload import MAX_OVERHEAD_BYTES
from prepshelf.errors import (
    NotFoundError,
    PayloadTooLargeError,
    PrepshelfError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)
from prepshelf.settings import Settings

log = logging.getLogger(__name__)

# A refused request's body is read and dropped only when this small and this quick.
_DRAIN_BYTES = 64 * 1024
_DRAIN_S = 5.0


class FrontGate:
    def __init__(
        self,
        app: ASGIApp,
        fastapi_app: FastAPI,
        json_body_limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        # Route templates whose JSON bodies may be bigger than `max_json_body_bytes`.
        self.json_body_limits = json_body_limits or {}
        settings: Settings = fastapi_app.state.settings
        self.settings = settings
        self.limiter = KeyLimiter(
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
            max_concurrent=settings.key_max_concurrent,
            max_streams=settings.key_max_streams,
            max_waiting=settings.key_max_waiting,
            max_wait_s=settings.key_max_wait_s,
            on_change=metrics.key_requests,
        )
        fastapi_app.state.limiter = self.limiter
        self.public_cache = PublicCache(settings.public_cache_s)
        self._table: RouteTable | None = None  # built on first use: routes are all in by then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._table is None:
            self._table = RouteTable(self.fastapi_app.routes)
        entry = self._table.match(scope)
        if entry is not None:
            scope[ROUTE_KEY] = entry.template  # a metrics label even if the gate answers
        policy = entry.policy if entry is not None else Policy.JSON
        upload = policy is Policy.UPLOAD
        s = self.settings
        json_max = s.max_json_body_bytes
        if entry is not None:
            json_max = self.json_body_limits.get(entry.template, json_max)
        reader = BodyReader(
            scope,
            receive,
            max_bytes=s.max_upload_bytes + MAX_OVERHEAD_BYTES if upload else json_max,
            idle_s=s.body_idle_timeout_s,
            total_s=s.upload_timeout_s if upload else s.json_body_timeout_s,
        )
        send = _closing_when_unread(send, reader)
        if entry is None and not is_api_path(scope.get("path", "")):
            await _refuse(
                send, reader, NotFoundError(f"No such path: {scope.get('path', '')[:200]}")
            )
            return
        if policy is Policy.PUBLIC:
            if entry is not None and self.public_cache.applies(scope, entry.template):
                await self.public_cache.serve(entry.template, self.app, scope, reader.receive, send)
                return
            await self.app(scope, reader.receive, send)
            return
        try:
            principal = await self._principal(scope)
            release = await self.limiter.admit(principal.subject, stream=policy is Policy.STREAM)
        except Refused as refused:
            metrics.rate_limited(refused.reason)
            await _refuse(send, reader, refused)
            return
        except PrepshelfError as exc:
            await _refuse(send, reader, exc)
            return
        try:
            if upload:
                declared = declared_length(scope)
                if declared is not None and declared > reader.max_bytes:
                    raise PayloadTooLargeError(
                        f"File is larger than the upload limit of {s.max_upload_bytes} bytes",
                        param="file",
                    )
                await self.app(scope, reader.receive, send)
                return
            if not reader.complete:
                if is_multipart(scope):
                    await _refuse(
                        send,
                        reader,
                        UnsupportedMediaTypeError(
                            "This route takes a JSON body; multipart bodies are accepted only "
                            "by uploads (POST /v1/files)"
                        ),
                    )
                    return
                declared = declared_length(scope)
                if declared is not None and declared > reader.max_bytes:
                    raise PayloadTooLargeError(
                        f"The request body is larger than {reader.max_bytes} bytes"
                    )
                try:
                    body = await reader.buffer()
                except ClientGone:
                    return  # nobody is listening for an answer
                await self.app(scope, replay(body, receive), send)
                return
            await self.app(scope, reader.receive, send)
        except PrepshelfError as exc:  # raised here, or by a body read the route let through
            if reader.answered:
                raise
            await send_error(send, exc)
        finally:
            release()

    async def _principal(self, scope: Scope) -> Principal:
        authorization = ""
        for name, value in scope.get("headers") or []:
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        key = bearer_key(authorization)
        if key is None:
            raise unauthenticated()
        ring: KeyRing = self.fastapi_app.state.keyring
        try:
            principal = await ring.resolve(key, self.fastapi_app.state.pool)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            log.warning("key lookup failed: %s", exc)
            raise ServiceUnavailableError(
                "The service cannot check API keys right now; retry shortly"
            ) from exc
        if principal is None:
            raise unauthenticated()
        scope.setdefault("state", {})["principal"] = principal
        return principal


async def _refuse(send: Send, reader: BodyReader, exc: PrepshelfError) -> None:
    """Answer a refusal; a small body already on its way is read and dropped first (within
    `_DRAIN_S`), so the connection survives; a big or slow one is left unread and the answer
    closes the connection."""
    await reader.drain(limit=_DRAIN_BYTES, within_s=_DRAIN_S)
    await send_error(send, exc)


def _closing_when_unread(send: Send, reader: BodyReader) -> Send:
    """Add `Connection: close` to a response that starts before the body was read whole."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            reader.answered = True
        if message["type"] == "http.response.start" and not reader.complete:
            reader.given_up = True  # the rest is never read: stop timing it
            kept = [(k, v) for k, v in message.get("headers") or [] if k.lower() != b"connection"]
            message = {**message, "headers": [*kept, (b"connection", b"close")]}
        await send(message)

    return wrapped
