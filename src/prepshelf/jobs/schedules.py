"""The schedule scanner: turns due schedules into runs, once per due time, cluster-wide.

A periodic task on the maintenance queue (every PREPSHELF_SCHEDULE_SCAN_INTERVAL_S seconds;
procrastinate defers each tick once however many workers run). Each pass claims due schedules
(`store/schedules.claim_due`: row locks that skip rows another scanner holds) and, in the same
transaction, writes each one's run (job row, queue message) and its next due time: two
scanners never take the same schedule, a crash before commit leaves the schedule due, and a
crash after commit leaves a run. The database's clock decides what is due.

Catch-up: due times that passed while no worker ran, or while the schedule's previous run
was still going, become one run, started as soon as possible; it records the latest of them
(`scheduled_for`) and how many it stands for (`params.catch_up`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import procrastinate
import psycopg

from prepshelf.domain import cron
from prepshelf.errors import InvalidRequestError
from prepshelf.jobs.queue import MAINTENANCE_QUEUE
from prepshelf.jobs.runs import start_run
from prepshelf.store import runs as runs_db
from prepshelf.store import schedules as schedules_db
from prepshelf.store.db import Pool

if TYPE_CHECKING:
    from prepshelf.jobs.resources import WorkerResources

log = logging.getLogger(__name__)

_BATCH = 50


async def fire_due(app: procrastinate.App, pool: Pool) -> int:
    """One pass over every due schedule; returns how many runs it started."""
    started = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            now, due = await schedules_db.claim_due(conn, limit=_BATCH)
            for schedule in due:
                # A fresh read: a "run now" may have committed after the claim's snapshot.
                if await runs_db.active_run_of_schedule(conn, schedule_id=schedule.id):
                    continue
                assert schedule.next_run_at is not None
                try:
                    times = cron.due_between(
                        schedule.cron, schedule.timezone, schedule.next_run_at, now
                    )
                    following = cron.next_due(schedule.cron, schedule.timezone, now)
                except (InvalidRequestError, ValueError) as exc:
                    # E.g. a time zone that left the tz database: stop instead of looping.
                    log.error("schedule %s cannot be computed, pausing it: %s", schedule.id, exc)
                    await schedules_db.set_paused(
                        conn, schedule_id=schedule.id, paused=True, next_run_at=None
                    )
                    continue
                try:
                    async with conn.transaction():
                        await start_run(
                            app,
                            conn,
                            project_id=schedule.project_id,
                            kind=schedule.kind,
                            params=schedule.params,
                            schedule_id=schedule.id,
                            scheduled_for=times.last,
                            catch_up={
                                "due_times": times.count,
                                "first_due_at": times.first.isoformat(),
                            },
                        )
                    started += 1
                except psycopg.errors.UniqueViolation:
                    log.warning("schedule %s: a run for %s exists already", schedule.id, times.last)
                await schedules_db.advance(
                    conn, schedule_id=schedule.id, next_run_at=following, started=True
                )
                if times.count > 1:
                    log.info(
                        "schedule %s: one run for %d due times (%s .. %s)",
                        schedule.id,
                        times.count,
                        times.first.isoformat(),
                        times.last.isoformat(),
                    )
        if len(due) < _BATCH:
            return started


def register(app: procrastinate.App, res: WorkerResources) -> None:
    every = res.settings.schedule_scan_interval_s

    @app.periodic(cron=f"* * * * * */{every}", periodic_id="schedules")
    @app.task(
        name="prepshelf.fire_schedules",
        queue=MAINTENANCE_QUEUE,
        queueing_lock="prepshelf.fire_schedules",
    )
    async def fire_schedules(timestamp: int) -> None:
        fired = await fire_due(app, res.pool)
        if fired:
            log.info("schedules: started %d run(s)", fired)
