"""Pooled connections are probed only when they may be stale (`store/db.check_if_stale`).

A round trip per checkout was about a tenth of a one-line file's job; a connection that
went back to the pool moments ago and whose socket is quiet is handed out as is. One the
server closed (a restart, a terminated backend) has a readable socket and is replaced, so a
restart still costs no failed statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from prepshelf.store import db
from prepshelf.store.db import open_pool


def _run(database_url: str, body: Callable[[db.Pool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        pool = await open_pool(database_url, min_size=1, max_size=1)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


async def _backend_pid(pool: db.Pool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
        assert row is not None
        return int(row["pid"])


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every full probe (a round trip) the pool makes."""
    seen: list[object] = []
    real = AsyncConnectionPool.check_connection

    async def counting(conn: Any) -> None:
        seen.append(conn)
        await real(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counting))
    return seen


def test_recently_returned_quiet_connection_is_not_probed(
    database_url: str, probes: list[object]
) -> None:
    async def body(pool: db.Pool) -> tuple[int, int]:
        first = await _backend_pid(pool)
        probes.clear()
        second = await _backend_pid(pool)
        return first, second

    first, second = _run(database_url, body)
    assert first == second
    assert probes == []


def test_connection_idle_past_the_limit_is_probed(
    database_url: str, probes: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PROBE_AFTER_IDLE_S", 0.0)

    async def body(pool: db.Pool) -> None:
        await _backend_pid(pool)
        probes.clear()
        await _backend_pid(pool)

    _run(database_url, body)
    assert len(probes) == 1


def test_connection_the_server_closed_is_replaced_without_an_error(
    database_url: str, probes: list[object]
) -> None:
    async def body(pool: db.Pool) -> tuple[int, int]:
        victim = await _backend_pid(pool)
        with psycopg.connect(database_url, autocommit=True) as admin:
            # Waits until the backend is gone; its FATAL message and EOF then reach the idle
            # socket in the pool.
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [victim])
        await asyncio.sleep(0.1)
        probes.clear()
        return victim, await _backend_pid(pool)  # a handed-out dead connection would raise

    victim, replacement = _run(database_url, body)
    assert replacement != victim
    assert probes  # the readable socket made it probe; the probe failed; a new connection
