"""Server-sent events: a job's, a batch's or a vector store's job events, live.

`GET /v1/jobs/{id}/events` ends when the job is final; `GET /v1/events?batch_id=` when no file
of the batch is in progress; `?vector_store_id=` stays open. `Last-Event-ID` (or
`?last_event_id=`) resumes after that event with nothing missed and nothing repeated.

An open stream checks that the key it was opened with is still valid before each delivery
and every `key_recheck_s` while idle, and ends once it is revoked (by any API process or the
CLI). How many streams one key may hold
open is limited by the front gate (`key_max_streams`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from prepshelf.api.auth import KeyRing, Principal, principal_in
from prepshelf.api.deps import ProjectDep
from prepshelf.api.events_hub import EventsHub
from prepshelf.api.views import ts
from prepshelf.domain.jobs import JobEvent
from prepshelf.errors import InvalidRequestError, NotFoundError
from prepshelf.store import events as events_db

router = APIRouter(tags=["events"])

_HELD_RECHECK_S = 0.25  # committed events wait behind an older open transaction: look again soon
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: JobEvent) -> bytes:
    body = {
        "id": event.id,
        "object": "job.event",
        "type": event.type,
        "created_at": ts(event.created_at),
        **event.data,
    }
    data = json.dumps(body, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


def _resume_id(header: str | None, query: int | None) -> int | None:
    if query is not None:
        return query
    if not header:
        return None
    try:
        return int(header)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid Last-Event-ID {header!r}: expected an event id", param="last_event_id"
        ) from None


async def _open(
    request: Request,
    project: str,
    scope: events_db.Scope,
    value: str,
    resume_from: int | None,
) -> StreamingResponse:
    async with request.app.state.pool.connection() as conn:
        if not await events_db.scope_exists(conn, project_id=project, scope=scope, value=value):
            what = {"job_id": "job", "vector_store_id": "vector store", "batch_id": "file batch"}
            raise NotFoundError(f"No such {what[scope]}: {value}", param=scope)
        cursor = await events_db.cursor_of(conn, project_id=project, event_id=resume_from)
    stream = _stream(request, project=project, scope=scope, value=value, cursor=cursor)
    return StreamingResponse(stream, media_type="text/event-stream", headers=_HEADERS)


async def _stream(
    request: Request,
    *,
    project: str,
    scope: events_db.Scope,
    value: str,
    cursor: events_db.Cursor,
) -> AsyncIterator[bytes]:
    pool = request.app.state.pool
    hub: EventsHub = request.app.state.events_hub
    settings = request.app.state.settings
    keepalive_s, recheck_s = settings.events_keepalive_s, settings.key_recheck_s
    principal = principal_in(request.scope)
    ring: KeyRing = request.app.state.keyring
    with hub.subscribe() as wake:
        yield b"retry: 2000\n\n"
        last_write = time.monotonic()
        next_check = last_write + recheck_s
        while True:
            if time.monotonic() >= next_check:
                if not await asyncio.shield(_key_lives(ring, principal, pool)):
                    return  # revoked: the client's reconnect gets a 401
                next_check = time.monotonic() + recheck_s
            # Shielded: a client that leaves mid-read must not cancel the query, which would
            # make psycopg close the pooled connection (a cheap way to churn the pool).
            finished, read = await asyncio.shield(
                _read(pool, project=project, scope=scope, value=value, cursor=cursor)
            )
            if read.events:
                # Nothing reaches a revoked key: checked before every delivery, and every
                # `recheck_s` while the stream idles.
                if not await asyncio.shield(_key_lives(ring, principal, pool)):
                    return
                next_check = time.monotonic() + recheck_s
                chunk = b""
                for event in read.events:
                    chunk += frame(event)
                    cursor = events_db.advance(cursor, event)
                yield chunk
                last_write = time.monotonic()
            if read.full:
                continue
            if finished and not read.held:
                return
            idle_s = time.monotonic() - last_write
            wait_s = max(0.0, min(keepalive_s - idle_s, next_check - time.monotonic()))
            if read.held:
                wait_s = min(wait_s, _HELD_RECHECK_S)
            try:
                # Woken by NOTIFY; the keep-alive timeout doubles as a fallback re-read.
                await asyncio.wait_for(wake.get(), timeout=wait_s)
            except TimeoutError:
                if time.monotonic() - last_write >= keepalive_s:
                    yield b": keep-alive\n\n"
                    last_write = time.monotonic()


async def _read(
    pool: Any, *, project: str, scope: events_db.Scope, value: str, cursor: events_db.Cursor
) -> tuple[bool, events_db.Read]:
    # Check the end first: events committed before that snapshot are read after it.
    async with pool.connection() as conn:
        finished = await events_db.scope_finished(conn, scope=scope, value=value)
        read = await events_db.read_events(
            conn, project_id=project, scope=scope, value=value, after=cursor
        )
    return finished, read


async def _key_lives(ring: KeyRing, principal: Principal | None, pool: Any) -> bool:
    return principal is not None and await ring.still_active(principal, pool)


LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]
LastEventQuery = Annotated[int | None, Query(ge=0, alias="last_event_id")]


@router.get("/v1/jobs/{job_id}/events")
async def job_events(
    job_id: str,
    request: Request,
    project: ProjectDep,
    last_event_id: LastEventId = None,
    last_event_query: LastEventQuery = None,
) -> StreamingResponse:
    resume = _resume_id(last_event_id, last_event_query)
    return await _open(request, project, "job_id", job_id, resume)


@router.get("/v1/events")
async def events(
    request: Request,
    project: ProjectDep,
    vector_store_id: Annotated[str | None, Query(max_length=128)] = None,
    batch_id: Annotated[str | None, Query(max_length=128)] = None,
    last_event_id: LastEventId = None,
    last_event_query: LastEventQuery = None,
) -> StreamingResponse:
    resume = _resume_id(last_event_id, last_event_query)
    if batch_id is not None:
        return await _open(request, project, "batch_id", batch_id, resume)
    if vector_store_id is not None:
        return await _open(request, project, "vector_store_id", vector_store_id, resume)
    raise InvalidRequestError("Pass vector_store_id or batch_id", param="vector_store_id")
