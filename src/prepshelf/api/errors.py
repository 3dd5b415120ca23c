"""The one place where exceptions become OpenAI-style HTTP errors.

Route exceptions go through FastAPI's handlers below. What escapes them (a bug) is caught by
`UnhandledErrors`, the outermost middleware but one: it answers a JSON 500 and writes one log
record with a bounded traceback. Starlette's own last-resort handler would re-raise after
answering, and uvicorn would then log the same traceback a second time.
"""

from __future__ import annotations

import json
import logging
import math
import traceback

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prepshelf.errors import PrepshelfError

log = logging.getLogger(__name__)

_TRACEBACK_FRAMES = 30  # the innermost frames say where; a deep recursion is not logged whole


def error_body(
    message: str, error_type: str, param: str | None, code: str | None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_headers(exc: PrepshelfError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return headers


def error_json(exc: PrepshelfError) -> bytes:
    return json.dumps(error_body(exc.message, exc.error_type, exc.param, exc.code)).encode()


async def send_error(send: Send, exc: PrepshelfError, *, close: bool = False) -> None:
    """Answer from ASGI middleware (before any route runs) as the handlers below would."""
    payload = error_json(exc)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in error_headers(exc).items()),
    ]
    if close:  # the body was not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def log_unexpected(method: str, path: str, exc: BaseException) -> None:
    """One record per failed request, with the innermost frames of its traceback."""
    frames = "".join(traceback.format_exception(exc, limit=-_TRACEBACK_FRAMES))
    log.error("unhandled error: %s %s: %r\n%s", method, path, exc, frames.rstrip())


class UnhandledErrors:
    """Turn an exception no handler took into a JSON 500, logged once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            log_unexpected(scope.get("method", "?"), scope.get("path", "?"), exc)
            if started:
                return  # a streamed response broke off: the client sees the cut
            payload = json.dumps(
                error_body(
                    f"Internal error ({type(exc).__name__}); see the server log",
                    "server_error",
                    None,
                    None,
                )
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})


def _param_from_loc(loc: tuple[object, ...]) -> str | None:
    # Only the first element says where the value was ("body", "query", …): a field may
    # itself be called `query`.
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    parts = [str(p) for p in loc]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PrepshelfError)
    async def _ours(request: Request, exc: PrepshelfError) -> JSONResponse:
        if exc.status_code >= 500:
            log_unexpected(request.method, request.url.path, exc)
        return JSONResponse(
            error_body(exc.message, exc.error_type, exc.param, exc.code),
            status_code=exc.status_code,
            headers=error_headers(exc) or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = _param_from_loc(tuple(first.get("loc", ())))
        message = first.get("msg", "Invalid request")
        if first.get("type") == "json_invalid":
            message, param = "We could not parse the JSON body of your request.", None
        elif param:
            message = f"Invalid value for '{param}': {message}"
        return JSONResponse(
            error_body(message, "invalid_request_error", param, None), status_code=400
        )

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value PostgreSQL cannot take (a NUL character, an out-of-range number) came from
        # the request: the caller's mistake, not ours.
        log.info("rejected a value: %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            error_body(
                "The request contains a value that cannot be stored or compared "
                "(for example a NUL character or an out-of-range number)",
                "invalid_request_error",
                None,
                None,
            ),
            status_code=400,
        )

    @app.exception_handler(RecursionError)
    @app.exception_handler(UnicodeEncodeError)
    async def _unrepresentable(request: Request, exc: Exception) -> JSONResponse:
        # Raised while a route works on what the caller sent: JSON nested deeper than Python
        # recurses, or text with a lone UTF-16 surrogate (valid JSON, not valid Unicode: the
        # database and the tokenizer refuse it). A 400, with the place named in one log line.
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
        log.warning("refused %s %s: %s%s", request.method, request.url.path, type(exc).__name__, at)
        message = (
            "The request is nested too deeply"
            if isinstance(exc, RecursionError)
            else "The request contains text that is not valid Unicode (a lone surrogate)"
        )
        return JSONResponse(
            error_body(message, "invalid_request_error", None, None), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(
            error_body(str(exc.detail), error_type, None, None), status_code=exc.status_code
        )
