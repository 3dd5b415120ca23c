"""Attacks beyond the report on the per-key limits: one key holding every event stream, a
flood of made-up keys, and a key over its request rate (its own small-limit service).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from support import postgres as pg
from support.attack import wait_until
from support.service import Service
from support.tenants import Tenant, ok

STREAMS = 3  # PREPSHELF_KEY_MAX_STREAMS in the security service


def test_one_key_cannot_hold_every_stream(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    store_a = ok(a.http.post("/v1/vector_stores", json={"name": "streams-a"}))["id"]
    store_b = ok(b.http.post("/v1/vector_stores", json={"name": "streams-b"}))["id"]
    base = f"http://127.0.0.1:{svc.port}"

    async def attack() -> tuple[list[int], int, int]:
        limits = httpx.Limits(max_connections=100)
        async with (
            httpx.AsyncClient(
                base_url=base,
                headers={"Authorization": f"Bearer {a.key}"},
                limits=limits,
                timeout=httpx.Timeout(30, read=None),
            ) as http_a,
            contextlib.AsyncExitStack() as stack,
        ):
            url = f"/v1/events?vector_store_id={store_a}"
            responses = await asyncio.gather(
                *(stack.enter_async_context(http_a.stream("GET", url)) for _ in range(40))
            )
            statuses = sorted(r.status_code for r in responses)
            # Another key is not affected.
            async with (
                httpx.AsyncClient(
                    base_url=base, headers={"Authorization": f"Bearer {b.key}"}, timeout=30
                ) as http_b,
                http_b.stream("GET", f"/v1/events?vector_store_id={store_b}") as other,
            ):
                other_status = other.status_code
            refused = next(r for r in responses if r.status_code == 429)
            assert refused.headers["retry-after"]
            # Close the open ones: the key gets its streams back.
            for r in responses:
                await r.aclose()
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {a.key}"}, timeout=30
        ) as http_a:

            async def reopened() -> int:
                async with http_a.stream("GET", f"/v1/events?vector_store_id={store_a}") as r:
                    return r.status_code

            after = 0
            deadline = time.monotonic() + 15
            while after != 200 and time.monotonic() < deadline:
                after = await reopened()
                await asyncio.sleep(0.2)
        return statuses, other_status, after

    statuses, other_status, after = asyncio.run(attack())
    assert statuses.count(200) == STREAMS and statuses.count(429) == 40 - STREAMS, statuses
    assert other_status == 200
    assert after == 200


def test_a_flood_of_made_up_keys(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    """500 requests with well-shaped unknown keys, 100 connections at once (more and this
    client's own loop falls behind the test service's 2 s header deadline): all 401; another
    key's reads meanwhile all succeed."""
    _, b = tenants
    base = f"http://127.0.0.1:{svc.port}"

    async def flood() -> tuple[list[int], list[int]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            made_up = [
                http.get(
                    "/v1/files",
                    headers={"Authorization": f"Bearer sk-prepshelf-{secrets.token_urlsafe(32)}"},
                )
                for _ in range(500)
            ]

            async def reads() -> list[int]:  # B's reads, one after another, meanwhile
                auth = {"Authorization": f"Bearer {b.key}"}
                return [(await http.get("/v1/files", headers=auth)).status_code for _ in range(20)]

            *done, real = await asyncio.gather(*made_up, reads())
        return [r.status_code for r in done], real

    fake, real = asyncio.run(flood())
    assert set(fake) == {401}
    assert set(real) == {200}


@pytest.fixture(scope="module")
def strict(
    postgres: pg.TestPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """An API with a tiny rate limit (5 per second, bursts of 5) and no worker."""
    service = Service(
        postgres.new_database(),
        Path(tmp_path_factory.mktemp("strict")),
        workers=0,
        extra_env={"PREPSHELF_RATE_LIMIT_PER_S": "5", "PREPSHELF_RATE_LIMIT_BURST": "5"},
    )
    service.api = service._spawn("api")
    try:
        service.wait_ready(min_workers=0)
        yield service
    finally:
        service.stop()


def test_rate_limit_answers_429_with_retry_after(strict: Service) -> None:
    with strict.http() as http:
        statuses = []
        for _ in range(20):
            r = http.get("/v1/files")
            statuses.append(r.status_code)
            if r.status_code == 429:
                error = r.json()["error"]
                assert error["type"] == "rate_limit_error"
                assert int(r.headers["retry-after"]) >= 1
        assert statuses.count(429) >= 10, statuses
        # Waiting as told is enough.
        assert wait_until(lambda: http.get("/v1/files").status_code == 200, timeout_s=10)
    # Another key has a bucket of its own.
    time.sleep(1.2)
    with strict.http() as admin:
        project = ok(admin.post("/v1/admin/projects", json={"name": "other"}))
        key = ok(admin.post("/v1/admin/keys", json={"project_id": project["id"]}))["value"]
        while admin.get("/v1/files").status_code == 200:  # empty the admin key's bucket
            pass
    with httpx.Client(
        base_url=f"http://127.0.0.1:{strict.port}", headers={"Authorization": f"Bearer {key}"}
    ) as other:
        assert [other.get("/v1/files").status_code for _ in range(5)] == [200] * 5


def test_the_sdk_honours_retry_after(strict: Service) -> None:
    """The official client retries a 429 after the Retry-After the server sent."""
    sdk = openai.OpenAI(base_url=strict.base_url, api_key=strict.api_key, max_retries=5)
    for _ in range(15):
        sdk.files.list()
