"""The front gate's parts in process: route policies, per-key limits, body reading, filters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from prepshelf.api.app import create_app
from prepshelf.api.auth import authenticate, require_admin
from prepshelf.api.bodies import BodyReader, ClientGone
from prepshelf.api.limits import KeyLimiter, Refused
from prepshelf.api.route_policy import PUBLIC_ROUTES, Policy, RouteTable, _walk
from prepshelf.errors import InvalidRequestError, PayloadTooLargeError, RequestTimeoutError
from prepshelf.settings import Settings
from prepshelf.store.search import check_filter_shape, filter_sql


def _app() -> Any:
    return create_app(Settings(api_keys=["sk-test"], database_url="postgresql://unused/x"))


def _needs_key(dependant: Dependant) -> bool:
    stack = [dependant]
    while stack:
        dep = stack.pop()
        if dep.call in (authenticate, require_admin):
            return True
        stack.extend(dep.dependencies)
    return False


def test_every_route_but_the_public_ones_needs_a_key() -> None:
    """A new route without the key dependency fails here (the gate checks keys early, but the
    route's project comes from the dependency)."""
    app = _app()
    for template, route in _walk(app.routes):
        if not isinstance(route, APIRoute):
            assert template in PUBLIC_ROUTES, template  # /openapi.json
            continue
        assert _needs_key(route.dependant) != (template in PUBLIC_ROUTES), template


def test_route_table_policies() -> None:
    table = RouteTable(_app().routes)

    def policy(method: str, path: str) -> Policy | None:
        entry = table.match({"method": method, "path": path})
        return entry.policy if entry else None

    assert policy("POST", "/v1/files") is Policy.UPLOAD
    assert policy("GET", "/v1/files") is Policy.JSON
    assert policy("PUT", "/v1/files") is Policy.JSON  # 405 from the router, after the key
    assert policy("POST", "/v1/vector_stores") is Policy.JSON
    assert policy("GET", "/v1/events") is Policy.STREAM
    assert policy("GET", "/v1/jobs/job_x/events") is Policy.STREAM
    for public in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/ui", "/ui/app.js"):
        assert policy("GET", public) is Policy.PUBLIC, public
    assert policy("GET", "/docs") is None and policy("GET", "/nowhere") is None
    assert policy("GET", "/v1/files/file-1/content") is Policy.JSON
    # Every path of the OpenAPI document is in the table.
    paths = set(_app().openapi()["paths"])
    assert paths <= {e.template for e in table.entries}


def test_limiter_runs_a_few_queues_some_and_refuses_the_rest() -> None:
    async def scenario() -> None:
        limiter = KeyLimiter(
            rate_per_s=0, burst=1, max_concurrent=2, max_streams=1, max_waiting=2, max_wait_s=5
        )
        first, second = await limiter.admit("k"), await limiter.admit("k")
        third = asyncio.create_task(limiter.admit("k"))
        fourth = asyncio.create_task(limiter.admit("k"))
        await asyncio.sleep(0)
        assert limiter.in_flight("k") == (2, 2, 0) and not third.done()
        with pytest.raises(Refused) as refused:  # the queue is full
            await limiter.admit("k")
        assert refused.value.reason == "concurrency" and refused.value.retry_after_s == 1
        await limiter.admit("other")  # another key is not affected
        stream = await limiter.admit("k", stream=True)  # streams count apart
        with pytest.raises(Refused) as refused:
            await limiter.admit("k", stream=True)
        assert refused.value.reason == "streams"
        first()
        first()  # a second release changes nothing
        release_third = await third  # first come, first served
        assert not fourth.done() and limiter.in_flight("k") == (2, 1, 1)
        second()
        release_fourth = await fourth
        for release in (release_third, release_fourth, stream):
            release()
        assert limiter.in_flight("k") == (0, 0, 0)
        assert (limiter.running, limiter.waiting, limiter.streams) == (1, 0, 0)  # "other"

    asyncio.run(scenario())


def test_limiter_wait_is_bounded_and_a_late_slot_is_passed_on() -> None:
    async def scenario() -> None:
        limiter = KeyLimiter(
            rate_per_s=0, burst=1, max_concurrent=1, max_streams=0, max_waiting=5, max_wait_s=0.05
        )
        held = await limiter.admit("k")
        with pytest.raises(Refused, match="waited more than"):
            await limiter.admit("k")
        assert limiter.in_flight("k") == (1, 0, 0)
        waiter = asyncio.create_task(limiter.admit("k"))
        await asyncio.sleep(0)
        waiter.cancel()  # the client went away while waiting
        with pytest.raises(asyncio.CancelledError):
            await waiter
        held()
        assert limiter.in_flight("k") == (0, 0, 0)

    asyncio.run(scenario())


def test_limiter_token_bucket() -> None:
    now = [100.0]
    limiter = KeyLimiter(
        rate_per_s=10, burst=3, max_concurrent=0, max_streams=0, clock=lambda: now[0]
    )

    def admit() -> None:
        asyncio.run(limiter.admit("k"))()

    for _ in range(3):
        admit()
    with pytest.raises(Refused) as refused:
        admit()
    assert refused.value.reason == "rate"
    assert refused.value.retry_after_s == pytest.approx(0.1)
    now[0] += 0.1
    admit()  # one token back
    with pytest.raises(Refused):
        admit()
    now[0] += 10  # refills up to the burst, no more
    for _ in range(3):
        admit()
    with pytest.raises(Refused):
        admit()


def test_limiter_forgets_idle_keys_when_it_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    from prepshelf.api import limits

    monkeypatch.setattr(limits, "_PRUNE_ABOVE", 10)
    now = [0.0]
    limiter = KeyLimiter(
        rate_per_s=1000, burst=5, max_concurrent=5, max_streams=5, clock=lambda: now[0]
    )

    async def scenario() -> None:
        held = await limiter.admit("busy")
        for i in range(50):
            now[0] += 1  # idle keys refill between requests
            (await limiter.admit(f"k{i}"))()
        assert len(limiter._keys) <= 11 and "busy" in limiter._keys
        held()

    asyncio.run(scenario())


def _scope(**headers: str) -> dict[str, Any]:
    return {"headers": [(k.encode(), v.encode()) for k, v in headers.items()]}


def _receiver(*messages: dict[str, Any], stall: bool = False) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


def test_body_reader_buffers_and_caps() -> None:
    scope = _scope(**{"content-length": "10"})
    parts = [
        {"type": "http.request", "body": b"12345", "more_body": True},
        {"type": "http.request", "body": b"67890", "more_body": False},
    ]
    reader = BodyReader(scope, _receiver(*parts), max_bytes=10, idle_s=1, total_s=1)
    assert asyncio.run(reader.buffer()) == b"1234567890" and reader.complete
    reader = BodyReader(scope, _receiver(*parts), max_bytes=9, idle_s=1, total_s=1)
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(reader.buffer())
    gone = BodyReader(scope, _receiver(parts[0]), max_bytes=10, idle_s=1, total_s=1)
    with pytest.raises(ClientGone):
        asyncio.run(gone.buffer())
    # No body declared: nothing to time or cap.
    assert BodyReader(_scope(), _receiver(), max_bytes=0, idle_s=1, total_s=1).complete


def test_body_reader_times_out_when_idle_or_slow() -> None:
    scope = _scope(**{"transfer-encoding": "chunked"})
    idle = BodyReader(scope, _receiver(stall=True), max_bytes=10, idle_s=0.05, total_s=5)
    with pytest.raises(RequestTimeoutError, match="stalled"):
        asyncio.run(idle.buffer())
    assert idle.given_up and not idle.complete

    async def slow() -> dict[str, Any]:
        await asyncio.sleep(0.03)
        return {"type": "http.request", "body": b"x", "more_body": True}

    total = BodyReader(scope, slow, max_bytes=1000, idle_s=1, total_s=0.2)
    with pytest.raises(RequestTimeoutError, match="within"):
        asyncio.run(total.buffer())


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "eq", "key": "k", "value": 1}
    for _ in range(depth - 1):
        node = {"type": "and", "filters": [node]}
    return node


def test_filter_shape_is_checked_without_recursion() -> None:
    check_filter_shape(_nested(8), max_depth=8)
    with pytest.raises(InvalidRequestError, match="nested at most 8"):
        check_filter_shape(_nested(9), max_depth=8)
    with pytest.raises(InvalidRequestError, match="nested at most"):
        check_filter_shape(_nested(50_000))  # far past Python's recursion limit
    wide = {"type": "or", "filters": [{"type": "eq", "key": "k", "value": 1}] * 100}
    with pytest.raises(InvalidRequestError, match="at most 100 conditions"):
        check_filter_shape(wide, max_conditions=100)
    check_filter_shape(wide, max_conditions=101)
    with pytest.raises(InvalidRequestError):
        filter_sql(_nested(65), [])  # the hard ceiling holds without the route's check
    args: list[Any] = []
    assert filter_sql(_nested(3), args).count("AND") == 0 and len(args) == 2
