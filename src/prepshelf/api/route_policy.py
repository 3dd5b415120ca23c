"""What the front gate must know of each route before it runs: who may call it, which body.

- `public`: no key (probes, metrics, the dashboard's static page, the OpenAPI document); these
  routes read no body.
- `json`: a key; the body is capped at `max_json_body_bytes` and must not be multipart (415).
- `upload`: a key; a multipart body streamed to the route, capped at `max_upload_bytes`. Every
  route that documents a multipart request body is one (today `POST /v1/files`).
- `stream`: a key; a long-lived event stream, counted against `key_max_streams`.

Unknown paths under `/v1` are treated as `json` (a key first, then the router's 404); any
other unknown path is answered 404 by the gate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, compile_path
from starlette.types import Scope


class Policy(Enum):
    PUBLIC = "public"
    JSON = "json"
    UPLOAD = "upload"
    STREAM = "stream"


PUBLIC_ROUTES = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/ui", "/ui/", "/ui/{asset}"}
)
STREAM_ROUTES = frozenset({"/v1/events", "/v1/jobs/{job_id}/events"})
API_PREFIX = "/v1"


@dataclass(frozen=True)
class RouteEntry:
    template: str
    methods: frozenset[str]
    policy: Policy
    regex: re.Pattern[str]


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full path template, route) of every leaf route, through FastAPI's included routers."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(inner.routes, prefix + str(getattr(context, "prefix", "") or ""))
        elif isinstance(getattr(route, "path", None), str):
            yield prefix + route.path, route


def _takes_multipart(route: Any) -> bool:
    extra = getattr(route, "openapi_extra", None) or {}
    content = (extra.get("requestBody") or {}).get("content") or {}
    return "multipart/form-data" in content


def policy_of(template: str, route: Any) -> Policy:
    if template in PUBLIC_ROUTES:
        return Policy.PUBLIC
    if template in STREAM_ROUTES:
        return Policy.STREAM
    if isinstance(route, APIRoute) and _takes_multipart(route):
        return Policy.UPLOAD
    return Policy.JSON


class RouteTable:
    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.entries: list[RouteEntry] = []
        for template, route in _walk(routes):
            methods = set(getattr(route, "methods", None) or {"GET"})
            if "GET" in methods:
                methods.add("HEAD")
            # The template as OpenAPI and the metrics labels write it: `{id:path}` -> `{id}`.
            regex, template, _ = compile_path(template)
            self.entries.append(
                RouteEntry(template, frozenset(methods), policy_of(template, route), regex)
            )

    def match(self, scope: Scope) -> RouteEntry | None:
        """The route this request would reach. A path matched with another method (the router
        answers 405) keeps its template, under the plain `json` policy (`public` if public):
        no upload or stream runs there."""
        path, method = scope.get("path", ""), scope.get("method", "")
        partial = None
        for entry in self.entries:
            if entry.regex.match(path):
                if method in entry.methods:
                    return entry
                partial = partial or entry
        if partial is None or partial.policy is Policy.PUBLIC:
            return partial
        return replace(partial, policy=Policy.JSON)


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")
