"""Connection pools and the bounded wait for the database."""

from __future__ import annotations

import asyncio
import logging
import select
import time
import weakref
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

DictConnection = psycopg.AsyncConnection[DictRow]
Pool = AsyncConnectionPool[DictConnection]


async def _configure(conn: DictConnection) -> None:
    await register_vector_async(conn)


# A pooled connection is probed with a round trip only when it may have gone stale: it sat idle
# for longer than this, or its socket has something to say. A server that shuts down or
# restarts closes its connections (a FATAL message, then EOF), so the socket of a dead
# connection is readable; an idle healthy one's is not (pool connections do not LISTEN).
# Probing every checkout cost a round trip per statement group: about a tenth of a tiny job.
PROBE_AFTER_IDLE_S = 5.0
_returned_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


async def mark_returned(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool `reset` callback: note when the connection went back to the pool."""
    _returned_at[conn] = time.monotonic()


async def check_if_stale(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool `check` callback: raise if the connection is dead, probing only when in doubt."""
    returned = _returned_at.get(conn)
    recent = returned is not None and time.monotonic() - returned < PROBE_AFTER_IDLE_S
    if recent and not conn.closed and not _socket_readable(conn.fileno()):
        return
    await AsyncConnectionPool.check_connection(conn)


def _socket_readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


def procrastinate_pool(**kwargs: Any) -> AsyncConnectionPool[Any]:
    """The pool factory of procrastinate's connector: connections checked as ours are, and in
    autocommit. Every query procrastinate runs through its pool is one statement; autocommit
    spares each a BEGIN and a COMMIT round trip (a job's fetch and finish: four)."""
    kwargs.update(check=check_if_stale, reset=mark_returned, configure=_autocommit)
    return AsyncConnectionPool(**kwargs)


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """A pool whose connections return dict rows and understand pgvector values.

    `check` validates a connection on checkout when it may be stale (`check_if_stale`), so a
    restarted PostgreSQL costs one failed probe per stale connection instead of an error in a
    request or a job.
    """
    pool: Pool = AsyncConnectionPool(
        url,
        connection_class=DictConnection,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        configure=_configure,
        check=check_if_stale,
        reset=mark_returned,
        open=False,
        reconnect_timeout=60,
    )
    await pool.open(wait=True, timeout=30)
    return pool


def wait_for_database(url: str, *, timeout_s: float = 30.0) -> None:
    """Block until PostgreSQL accepts a connection, or raise after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(url, connect_timeout=5):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for the database: %s", exc)
            time.sleep(0.5)


async def wait_for_database_async(url: str, *, timeout_s: float = 30.0) -> None:
    await asyncio.to_thread(wait_for_database, url, timeout_s=timeout_s)
