"""Registers the run tasks (source sync, evaluation run) and the schedule scanner."""

from __future__ import annotations

from typing import TYPE_CHECKING

import procrastinate

from prepshelf.jobs import schedules
from prepshelf.jobs.evals import run_eval
from prepshelf.jobs.retry import RequeueStrategy
from prepshelf.jobs.runs import EVAL_TASK, RUNS_QUEUE, SYNC_TASK, execute_run
from prepshelf.jobs.sync import run_sync

if TYPE_CHECKING:
    from prepshelf.jobs.resources import WorkerResources


def register(app: procrastinate.App, res: WorkerResources) -> None:
    @app.task(name=SYNC_TASK, queue=RUNS_QUEUE, retry=RequeueStrategy())
    async def source_sync(job_id: str) -> None:
        await execute_run(res, app, job_id, run_sync)

    @app.task(name=EVAL_TASK, queue=RUNS_QUEUE, retry=RequeueStrategy())
    async def eval_run(job_id: str) -> None:
        await execute_run(res, app, job_id, run_eval)

    schedules.register(app, res)
