"""Dependency aliases shared by the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from psycopg import AsyncConnection

from prepshelf.api.auth import authenticate
from prepshelf.store.pages import PageRequest


async def _connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    async with request.app.state.pool.connection() as conn:
        yield conn


# Dependencies without I/O are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, a thread hop on every request (and a wait for a thread under CPU load).
async def _page(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    after: Annotated[str | None, Query(max_length=128)] = None,
    before: Annotated[str | None, Query(max_length=128)] = None,
) -> PageRequest:
    return PageRequest(limit=limit, order=order, after=after, before=before)  # type: ignore[arg-type]


ProjectDep = Annotated[str, Depends(authenticate)]
ConnDep = Annotated[AsyncConnection[Any], Depends(_connection)]
PageDep = Annotated[PageRequest, Depends(_page)]


async def poll_hint(request: Request, response: Response) -> None:
    """Tell the SDK's poll helpers how long to wait before the next retrieve."""
    response.headers["openai-poll-after-ms"] = str(request.app.state.settings.poll_after_ms)


PollHint = Depends(poll_hint)
