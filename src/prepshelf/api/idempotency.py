"""Idempotency-Key for POSTs: a retried request replays the first answer instead of creating twice.

Routers opt in with `route_class=IdempotentRoute`; every POST route of such a router then
claims the key (per project, from `ProjectDep`) before the endpoint runs:

- same key, same request  → the first response is replayed (status and JSON), nothing created;
- same key, other request → 409 naming `Idempotency-Key`;
- a duplicate arriving while the first is in flight waits for its answer. The table's primary
  key is the lock (an upsert in `store/idempotency.py`), so concurrent duplicates never both
  create.

JSON requests are fingerprinted by endpoint and canonical body. Multipart uploads are never
buffered: the route streams the file, then calls `claim_streamed()` with the file's sha256,
purpose and filename, and deletes its blob when told it is a duplicate.

Only successful (2xx) answers are remembered; an error releases the key, so a retry runs again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from prepshelf.api.deps import ProjectDep
from prepshelf.errors import ConflictError, InvalidRequestError
from prepshelf.store import idempotency as keys_db

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
_MAX_KEY_CHARS = 255
# A claim whose request never finished (its API process died) is taken over after this long.
_STALE_CLAIM_S = 300
_POLL_S = 0.1


class IdempotentReplay(Exception):
    """The request is a duplicate: answer with the first response."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__("replay")
        self.status_code, self.body = status_code, body

    def response(self) -> Response:
        return JSONResponse(
            self.body, status_code=self.status_code, headers={"Idempotent-Replayed": "true"}
        )


@dataclass
class _Scope:
    project: str
    key: str
    endpoint: str
    claimed: bool = False


def _fingerprint(endpoint: str, payload: bytes) -> str:
    return hashlib.sha256(endpoint.encode() + b"\0" + payload).hexdigest()


def _canonical_json(body: bytes) -> bytes:
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        # Not JSON (or nested past the parser's depth): compare the bytes; validation answers
        # the client anyway.
        return body


async def _claim(request: Request, scope: _Scope, fingerprint: str) -> None:
    settings = request.app.state.settings
    pool = request.app.state.pool
    deadline = time.monotonic() + settings.idempotency_wait_s
    while True:
        async with pool.connection() as conn:
            if random.random() < 0.01:
                await keys_db.purge_expired(conn)
            if await keys_db.claim(
                conn,
                project_id=scope.project,
                key=scope.key,
                endpoint=scope.endpoint,
                fingerprint=fingerprint,
                ttl_s=settings.idempotency_ttl_s,
                stale_s=_STALE_CLAIM_S,
            ):
                scope.claimed = True
                return
            row = await keys_db.get_record(conn, project_id=scope.project, key=scope.key)
        if row is None:
            continue  # the first request failed and let go of the key: claim it now
        if row.fingerprint != fingerprint:
            raise ConflictError(
                f"The {HEADER} {scope.key!r} was already used for a different request "
                f"({row.endpoint}); send a new key for a new request",
                param=HEADER,
            )
        if row.answer is not None:
            raise IdempotentReplay(row.answer.status_code, row.answer.body)
        if time.monotonic() > deadline:
            raise ConflictError(
                f"A request with {HEADER} {scope.key!r} is still being processed; retry later",
                param=HEADER,
            )
        await asyncio.sleep(_POLL_S)


async def _scope_from_request(request: Request, project: ProjectDep) -> None:
    """Route dependency: claim the key for JSON requests; uploads claim after streaming."""
    key = request.headers.get(HEADER)
    if key is None:
        return
    if not key or len(key) > _MAX_KEY_CHARS or not key.isprintable():
        raise InvalidRequestError(
            f"Invalid {HEADER}: send 1 to {_MAX_KEY_CHARS} printable characters", param=HEADER
        )
    scope = _Scope(project, key, f"{request.method} {request.url.path}")
    request.state.idempotency = scope
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return
    body = _canonical_json(await request.body())
    await _claim(request, scope, _fingerprint(scope.endpoint, body))


async def claim_streamed(request: Request, *parts: str) -> None:
    """For streamed bodies: claim with a fingerprint of what was received (file sha256, fields).

    Raises IdempotentReplay for a duplicate (the caller deletes what it stored first) or
    ConflictError when the key was used for something else. No-op without the header.
    """
    scope: _Scope | None = getattr(request.state, "idempotency", None)
    if scope is None or scope.claimed:
        return
    payload = "\0".join(parts).encode()
    await _claim(request, scope, _fingerprint(scope.endpoint, payload))


async def _complete(request: Request, response: Response) -> None:
    scope: _Scope | None = getattr(request.state, "idempotency", None)
    if scope is None or not scope.claimed:
        return
    body = getattr(response, "body", None)
    if 200 <= response.status_code < 300 and body is not None:
        try:
            stored = json.loads(body)
        except ValueError:
            stored = None
        if stored is not None:
            async with request.app.state.pool.connection() as conn:
                await keys_db.save_response(
                    conn,
                    project_id=scope.project,
                    key=scope.key,
                    status_code=response.status_code,
                    response=stored,
                )
            return
    await _release(request, scope)


async def _release(request: Request, scope: _Scope) -> None:
    """The first request did not succeed: free the key so that a retry runs for real."""
    try:
        async with request.app.state.pool.connection() as conn:
            await keys_db.release(conn, project_id=scope.project, key=scope.key)
    except Exception:  # the answer to the client matters more; the claim goes stale by itself
        log.warning("could not release %s %r", HEADER, scope.key, exc_info=True)


class IdempotentRoute(APIRoute):
    """An APIRoute whose POSTs honour Idempotency-Key (see the module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {m.upper() for m in (kwargs.get("methods") or [])}
        deps = list(kwargs.get("dependencies") or [])
        # include_router rebuilds routes with their dependencies: add ours once.
        if "POST" in methods and not any(d.dependency is _scope_from_request for d in deps):
            kwargs["dependencies"] = [Depends(_scope_from_request), *deps]
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except IdempotentReplay as replay:
                return replay.response()
            except BaseException:
                scope: _Scope | None = getattr(request.state, "idempotency", None)
                if scope is not None and scope.claimed:
                    await _release(request, scope)
                raise
            await _complete(request, response)
            return response

        return run
