"""Connection pools and the bounded wait for the database."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

DictConnection = psycopg.AsyncConnection[DictRow]
Pool = AsyncConnectionPool[DictConnection]


async def _configure(conn: DictConnection) -> None:
    await register_vector_async(conn)


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """A pool whose connections return dict rows and understand pgvector values.

    `check` validates a connection on checkout, so a restarted PostgreSQL costs one failed
    probe per stale connection instead of an error in a request or a job.
    """
    pool: Pool = AsyncConnectionPool(
        url,
        connection_class=DictConnection,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        configure=_configure,
        check=AsyncConnectionPool.check_connection,
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
