"""Creating POSTs honour Idempotency-Key: their routers use `route_class=IdempotentRoute`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute

from prepshelf.api.app import create_app
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.settings import Settings

# Must be idempotent. Other features' POSTs should join this list once their routers opt in.
REQUIRED = {
    "/v1/files",
    "/v1/vector_stores",
    "/v1/vector_stores/{vector_store_id}/files",
    "/v1/vector_stores/{vector_store_id}/file_batches",
    "/v1/jobs/{job_id}/retry",
    "/v1/batches",
    "/v1/admin/projects",
    "/v1/admin/keys",
}


def _walk(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's lazily included routers
        yield from _walk(inner.routes) if inner is not None else [route]


def test_creating_posts_are_idempotent() -> None:
    app = create_app(Settings(api_keys=["sk-test"], database_url="postgresql://unused/x"))
    posts = {
        r.path: r for r in _walk(app.routes) if isinstance(r, APIRoute) and "POST" in r.methods
    }
    assert set(posts) >= REQUIRED
    assert [p for p in REQUIRED if not isinstance(posts[p], IdempotentRoute)] == []
