"""The one place where exceptions become OpenAI-style HTTP errors."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from prepshelf.errors import PrepshelfError

log = logging.getLogger(__name__)


def error_body(
    message: str, error_type: str, param: str | None, code: str | None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


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
            log.exception("request failed: %s %s", request.method, request.url.path)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(
            error_body(exc.message, exc.error_type, exc.param, exc.code),
            status_code=exc.status_code,
            headers=headers,
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(
            error_body(str(exc.detail), error_type, None, None), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                f"Internal error ({type(exc).__name__}); see the server log",
                "server_error",
                None,
                None,
            ),
            status_code=500,
        )
