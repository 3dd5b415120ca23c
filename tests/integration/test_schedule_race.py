"""The schedule scanner's exactly-once guards, raced for real.

Eight scanners run `fire_due` at the same moment on their own connections over forty due
schedules: FOR UPDATE SKIP LOCKED must give each schedule to one of them, so each schedule
gets exactly one run. Then the unique index on (schedule_id, scheduled_for) is checked on its
own: a second run for the same due time is refused by the database even when the scanner's
lock is bypassed (a run written by hand, as a crashed-and-retried scanner would).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from prepshelf.ids import new_schedule_id, new_vector_store_id
from prepshelf.jobs.queue import build_app
from prepshelf.jobs.runs import start_run
from prepshelf.jobs.schedules import fire_due
from prepshelf.store import keys as keys_db
from prepshelf.store import schedules as schedules_db
from prepshelf.store import vector_stores as stores_db
from prepshelf.store.db import open_pool

SCHEDULES = 40
SCANNERS = 8
STATIC = {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}


async def _seed(url: str) -> tuple[str, list[str]]:
    pool = await open_pool(url, max_size=2)
    async with pool.connection() as conn, conn.transaction():
        project = await keys_db.create_project(conn, name="race")
        store_id = new_vector_store_id()
        await stores_db.create_store(
            conn,
            store_id=store_id,
            project_id=project.id,
            name="race",
            description=None,
            metadata=None,
            expires_after=None,
            embedding_model="all-MiniLM-L6-v2",
            dimensions=384,
        )
        now = (await (await conn.execute("SELECT now() AS now")).fetchone())["now"]
        ids = []
        for _ in range(SCHEDULES):
            schedule = await schedules_db.insert_schedule(
                conn,
                schedule_id=new_schedule_id(),
                project_id=project.id,
                name=None,
                kind="source_sync",
                params={
                    "vector_store_id": store_id,
                    "source": "/nowhere",
                    "chunking_strategy": {"type": "static", "static": STATIC},
                },
                cron="0 3 * * *",
                timezone="UTC",
                next_run_at=now - timedelta(minutes=5),
                paused=False,
                metadata={},
            )
            ids.append(schedule.id)
    await pool.close()
    return project.id, ids


async def _race(url: str) -> list[int]:
    app = build_app(url, pool_size=SCANNERS + 1)
    async with app.open_async():
        pools = [await open_pool(url, max_size=1) for _ in range(SCANNERS)]
        try:
            start = asyncio.Event()

            async def scanner(pool: object) -> int:
                await start.wait()
                return await fire_due(app, pool)  # type: ignore[arg-type]

            tasks = [asyncio.create_task(scanner(p)) for p in pools]
            await asyncio.sleep(0.1)
            start.set()
            return await asyncio.gather(*tasks)
        finally:
            for pool in pools:
                await pool.close()


async def _runs_per_schedule(url: str) -> Counter[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT schedule_id FROM jobs WHERE schedule_id IS NOT NULL")
        return Counter(row[0] for row in await cur.fetchall())


async def _second_run_for_the_same_due_time(url: str, project_id: str, schedule_id: str) -> None:
    app = build_app(url)
    async with app.open_async(), await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT scheduled_for, params FROM jobs WHERE schedule_id = %s", [schedule_id]
        )
        scheduled_for, params = await cur.fetchone()  # type: ignore[misc]
        # The first run ends, so the scanner's "one run at a time" rule no longer stands
        # in the way: only the unique index does.
        await conn.execute(
            "UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE schedule_id = %s",
            [schedule_id],
        )
        await conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            async with conn.transaction():
                await start_run(
                    app,
                    conn,
                    project_id=project_id,
                    kind="source_sync",
                    params={k: v for k, v in params.items() if k != "catch_up"},
                    schedule_id=schedule_id,
                    scheduled_for=scheduled_for,
                )


def test_racing_scanners_start_one_run_per_due_schedule(database_url: str) -> None:
    project_id, schedule_ids = asyncio.run(_seed(database_url))
    started = asyncio.run(_race(database_url))
    assert sum(started) == SCHEDULES, started
    per_schedule = asyncio.run(_runs_per_schedule(database_url))
    assert per_schedule == Counter(dict.fromkeys(schedule_ids, 1))
    # A second pass finds nothing due: each schedule's next due time moved on with its run.
    assert sum(asyncio.run(_race(database_url))) == 0
    asyncio.run(_second_run_for_the_same_due_time(database_url, project_id, schedule_ids[0]))
    assert asyncio.run(_runs_per_schedule(database_url))[schedule_ids[0]] == 1
