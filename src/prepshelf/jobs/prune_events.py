"""Hourly: drop job events older than the retention (PREPSHELF_EVENTS_RETENTION_S)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import procrastinate

from prepshelf.jobs.queue import MAINTENANCE_QUEUE
from prepshelf.store.events import prune_events

if TYPE_CHECKING:
    from prepshelf.jobs.resources import WorkerResources

log = logging.getLogger(__name__)


def register(app: procrastinate.App, res: WorkerResources) -> None:
    @app.periodic(cron="17 * * * *", periodic_id="prune_events")
    @app.task(
        name="prepshelf.prune_events",
        queue=MAINTENANCE_QUEUE,
        queueing_lock="prepshelf.prune_events",
    )
    async def prune_old_events(timestamp: int) -> None:
        async with res.pool.connection() as conn:
            removed = await prune_events(conn, older_than_s=res.settings.events_retention_s)
        if removed:
            log.info("pruned %d job events past the retention", removed)
