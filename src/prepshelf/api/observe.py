"""One ASGI middleware for what every request leaves behind: log context, latency, audit.

- Log context: a request id (the client's X-Request-ID when sane, else a new one, echoed
  back) and the object ids in the path (known by prefix) are bound for every log line of
  the request.
- Latency: `prepshelf_http_request_duration_seconds` by route *template*, never the raw
  path (unmatched paths count as one `unmatched` route); methods and statuses are folded into
  closed sets by `metrics.observe_request`. A request answered by nobody because its client
  left first counts as 499.
- Audit: a mutating call (POST/DELETE…) gets its audit row written after the response has
  been sent, by FastAPI `BackgroundTasks`. Scheduling from here rather than from a route
  dependency also covers calls that end in an error response, which drop a route's tasks.

Pure ASGI (no BaseHTTPMiddleware), so streamed responses (SSE, downloads) pass untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import BackgroundTasks, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prepshelf import logs, metrics
from prepshelf.api import audit

log = logging.getLogger("prepshelf.api.access")

ROUTE_KEY = "prepshelf.route"  # the route template the front gate matched (`api/gate.py`)
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_BODY_CAP = 64 * 1024  # enough for any object a mutating call returns; bigger bodies are not read


# Object ids are recognisable by their prefix, so a request's ids are known before routing
# (the router fills in path params only once it runs the endpoint).
_ID_PREFIXES = (
    ("vsfb_", "file_batch_id"),
    ("batch_", "batch_id"),
    ("vs_", "vector_store_id"),
    ("file-", "file_id"),
    ("job_", "job_id"),
)


def _ids_in_path(path: str) -> dict[str, str]:
    ids: dict[str, str] = {}
    for segment in path.split("/"):
        for prefix, field in _ID_PREFIXES:
            if segment.startswith(prefix) and len(segment) <= 128:
                ids[field] = segment
                break
    return ids


def _route_template(scope: Scope) -> str | None:
    """The matched route's path template, known once the router has run."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):  # answered by the front gate, before the router ran
        path = scope.get(ROUTE_KEY)
    return path if isinstance(path, str) else None


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        when = datetime.now(UTC)
        method: str = scope["method"]
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SANE_REQUEST_ID.match(given) else secrets.token_hex(8)
        ids = _ids_in_path(scope.get("path", ""))
        # Keep a mutating call's (small, JSON) response to learn the id of what it created.
        keep_body = method in audit.MUTATING
        state: dict[str, Any] = {"status": None, "stream": False, "body": bytearray()}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                out = list(message.get("headers") or [])
                ctype = next((v for k, v in out if k.lower() == b"content-type"), b"")
                state["stream"] = ctype.startswith(b"text/event-stream")
                state["json"] = ctype.startswith(b"application/json")
                out.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": out}
            elif message["type"] == "http.response.body" and keep_body and state.get("json"):
                body: bytearray = state["body"]
                if len(body) <= _BODY_CAP:
                    body += message.get("body", b"")
            await send(message)

        with logs.context(request_id=request_id, **ids):
            error: BaseException | None = None
            try:
                await self.app(scope, receive, send_wrapper)
            except BaseException as exc:
                error = exc
                raise
            finally:
                seconds = time.perf_counter() - started
                if state["status"] is not None:
                    status = int(state["status"])
                else:  # no answer sent: a bug (500) or a client that left (499)
                    status = 500 if error is not None else 499
                route = _route_template(scope)
                label = route or "unmatched"
                params = dict(scope.get("path_params") or {})
                auditing = audit.is_audited(method, route)
                if not state["stream"]:
                    metrics.observe_request(
                        method=method, route=label, status=status, seconds=seconds
                    )
                authorization = headers.get(b"authorization", b"").decode("latin-1")
                who = audit.caller(scope, authorization) if auditing else None
                # Refused callers without a key stay at DEBUG: they must not fill the log.
                level = logging.INFO if who is not None else logging.DEBUG
                shown = metrics.method_label(method)
                log.log(level, "%s %s -> %d in %.1f ms", shown, label, status, seconds * 1000)
                if who is not None and not isinstance(error, asyncio.CancelledError):
                    entry = audit.AuditEntry(
                        when=when,
                        method=method,
                        route=label,
                        path_params={k: str(v) for k, v in params.items()},
                        object_id=_object_id(state["body"], params),
                        status_code=status,
                        request_id=request_id,
                        project_id=who[0],
                        actor=who[1],
                    )
                    # The response is complete: the client is not kept waiting by this write.
                    tasks = BackgroundTasks()
                    tasks.add_task(audit.record, self.fastapi_app, entry)
                    await tasks()


def _object_id(body: bytearray, params: dict[str, Any]) -> str | None:
    """The object a call created or touched: the response's `id`, else the last path id."""
    if body and len(body) <= _BODY_CAP:
        try:
            data = json.loads(bytes(body))
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            return str(data["id"])[:200]
    values = [str(v) for v in params.values()]
    return values[-1][:200] if values else None


def install(app: FastAPI) -> None:
    app.add_middleware(ObserveMiddleware, fastapi_app=app)
