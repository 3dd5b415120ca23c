"""Runs: source syncs and evaluation runs as jobs on their own queue.

A run is started by a schedule's due time (jobs/schedules.py), by "run now", or by a client
(POST /v1/evals/{id}/runs): `start_run` writes its job row (and for evals its run row) and
its queue message in the caller's transaction. On a worker, `execute_run` claims the job and runs
the kind's work with the shared endings: a transient fault (lost database, an unreachable
source or vendor) goes back on the queue with backoff, anything else fails the job with a
message naming the run, its stage and the cause; cancel and shutdown are honoured.

The `runs` queue has its own sub-worker, so a long evaluation or a large sync never holds up
ingestion, /v1/batches or the maintenance tasks. A sync that waits for its files' ingest jobs
does not hold it either: it goes back on the queue and looks again a little later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import procrastinate
import psycopg
from psycopg import AsyncConnection

from prepshelf import logs, metrics
from prepshelf.domain.job_errors import gave_up, job_error_message
from prepshelf.domain.runs import RunJob
from prepshelf.domain.schedules import EvalRunParams, SyncParams
from prepshelf.errors import FileProcessingError
from prepshelf.ids import new_eval_run_id, new_job_id
from prepshelf.jobs.failures import retry_if_transient
from prepshelf.jobs.retry import RequeueJob
from prepshelf.store import eval_runs as eval_runs_db
from prepshelf.store import evals as evals_db
from prepshelf.store import job_progress
from prepshelf.store import jobs as jobs_db
from prepshelf.store import runs as runs_db
from prepshelf.store.sources import SourceError

if TYPE_CHECKING:
    from prepshelf.jobs.resources import WorkerResources

log = logging.getLogger(__name__)

RUNS_QUEUE = "runs"
SYNC_TASK = "prepshelf.source_sync"
EVAL_TASK = "prepshelf.eval_run"
_TASKS = {"source_sync": SYNC_TASK, "eval_run": EVAL_TASK}
_UNITS = {"source_sync": "files", "eval_run": "questions"}
WAITING_STAGE = "ingesting"  # a sync between looks at its files' ingest jobs


@dataclass(frozen=True)
class StartedRun:
    job_id: str
    eval_run_id: str | None = None


async def start_run(
    app: procrastinate.App,
    conn: AsyncConnection[Any],
    *,
    project_id: str,
    kind: str,
    params: dict[str, Any],
    schedule_id: str | None = None,
    scheduled_for: datetime | None = None,
    catch_up: dict[str, Any] | None = None,
    run_name: str | None = None,
    run_metadata: dict[str, str] | None = None,
) -> StartedRun:
    """Write the run's rows and queue message in the caller's transaction."""
    job_id, eval_run_id = new_job_id(), None
    store_id: str | None
    if kind == "source_sync":
        snapshot = SyncParams.from_json(params).to_json()
        store_id = snapshot["vector_store_id"]
    elif kind == "eval_run":
        wanted = EvalRunParams.from_json(params)
        snapshot = wanted.to_json()
        evaluation = await evals_db.get_eval(conn, project_id=project_id, eval_id=wanted.eval_id)
        store_id = wanted.vector_store_id or (evaluation.vector_store_id if evaluation else None)
        if evaluation is not None and store_id is not None:
            # Without an eval (deleted meanwhile) or a store, the job fails with the reason.
            eval_run_id = new_eval_run_id()
            await eval_runs_db.insert_run(
                conn,
                run_id=eval_run_id,
                evaluation=evaluation,
                name=run_name,
                vector_store_id=store_id,
                metadata=run_metadata or {},
            )
    else:
        raise ValueError(f"unknown run kind {kind!r}")
    if catch_up is not None:
        snapshot["catch_up"] = catch_up
    await runs_db.insert_run_job(
        conn,
        job_id=job_id,
        project_id=project_id,
        kind=kind,
        vector_store_id=store_id,
        params=snapshot,
        progress_unit=_UNITS[kind],
        schedule_id=schedule_id,
        scheduled_for=scheduled_for,
        eval_run_id=eval_run_id,
    )
    deferrer = app.configure_task(_TASKS[kind], queue=RUNS_QUEUE, connection=conn)
    queue_id = await deferrer.defer_async(job_id=job_id)
    await jobs_db.set_queue_job_ids(conn, [(job_id, queue_id)])
    return StartedRun(job_id=job_id, eval_run_id=eval_run_id)


# --- on the worker --------------------------------------------------------------------------


class RunFailed(Exception):
    """The run cannot succeed (a deleted store, a refused source): fail it with this reason."""


class RunCancelled(Exception):
    """Cancel was requested; the work in flight stopped at a checkpoint."""

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        super().__init__("cancel requested")
        self.result = result


class RunWaits(Exception):
    """The run waits for other jobs: look again in `delay_s` seconds."""

    def __init__(self, delay_s: float) -> None:
        super().__init__("waiting")
        self.delay_s = delay_s


@dataclass
class RunContext:
    """What one execution of a run knows: the job as claimed, and the stage it is in."""

    res: WorkerResources
    app: procrastinate.App
    job: RunJob
    stage: str | None

    async def enter(self, stage: str, *, total: int | None = None, unit: str | None = None) -> None:
        async with self.res.pool.connection() as conn:
            await job_progress.set_stage(
                conn, job_id=self.job.id, stage=stage, progress_total=total, progress_unit=unit
            )
        self.stage = stage

    async def progress(self, done: int, total: int | None = None) -> None:
        """Record progress; stop here (RunCancelled) when cancel was requested."""
        async with self.res.pool.connection() as conn:
            if await runs_db.set_progress(conn, job_id=self.job.id, done=done, total=total):
                raise RunCancelled()


Work = Callable[[RunContext], Awaitable[None]]


async def execute_run(
    res: WorkerResources, app: procrastinate.App, job_id: str, work: Work
) -> None:
    """Claim the run and do its work; every ending is written to the job row."""
    logs.bind(job_id=job_id)
    async with res.pool.connection() as conn:
        job = await runs_db.get_run_job(conn, job_id=job_id)
        if job is None or job.final:
            return
        if job.status == "running" and job.stage == WAITING_STAGE:
            # A waiting sync looking in again: the same attempt, not a new one.
            if await runs_db.heartbeat(conn, job_id=job_id, worker=res.worker_name):
                job = await runs_db.get_run_job(conn, job_id=job_id)
        else:
            claimed = await runs_db.claim(conn, job_id=job_id, worker=res.worker_name)
            if claimed is None:  # cancelled before it started
                await runs_db.finish_cancelled(conn, job_id=job_id, result=None)
                return
            job = claimed
    assert job is not None
    ctx = RunContext(res=res, app=app, job=job, stage=job.stage)
    try:
        await work(ctx)
    except RunWaits as waits:
        raise RequeueJob("waiting for ingest jobs", waits.delay_s) from None
    except RunCancelled as cancelled:
        async with res.pool.connection() as conn:
            await runs_db.finish_cancelled(conn, job_id=job_id, result=cancelled.result)
    except asyncio.CancelledError:
        async with res.pool.connection() as conn:
            await runs_db.release(
                conn, job=job, reason="released: worker shutting down", error=None
            )
        raise RequeueJob("worker shutting down") from None
    except Exception as exc:
        await _fail(ctx, exc)
    async with res.pool.connection() as conn:
        await metrics.observe_finished_job(conn, job_id=job_id)


def _transient(exc: Exception) -> bool:
    if isinstance(exc, psycopg.OperationalError):
        return True
    if isinstance(exc, SourceError | FileProcessingError):
        return exc.retryable
    return False


async def _fail(ctx: RunContext, exc: Exception) -> None:
    job, settings = ctx.job, ctx.res.settings
    target = job.params.get("source") or job.params.get("eval_id") or job.vector_store_id
    if isinstance(exc, RunFailed | SourceError | FileProcessingError):
        reason = str(exc)
    else:
        reason = f"internal error: {type(exc).__name__}: {exc}"
    stage = ctx.stage or "starting"
    error = {
        "code": "server_error",
        "message": job_error_message(f"{job.kind} {target}", stage, reason),
        "stage": stage,
    }

    async def release() -> None:
        log.warning("run %s: transient fault, retrying: %s", job.id, reason)
        async with ctx.res.pool.connection() as conn:
            await runs_db.release(conn, job=job, reason="retry scheduled", error=error)

    await retry_if_transient(
        settings,
        attempts=job.attempts,
        transient=_transient(exc),
        message=error["message"],
        release=release,
    )
    if _transient(exc):
        error["message"] = gave_up(error["message"], job.attempts)
    if not isinstance(exc, RunFailed | SourceError):
        log.exception("run %s failed: %s", job.id, error["message"])
    else:
        log.error("run %s failed: %s", job.id, error["message"])
    async with ctx.res.pool.connection() as conn:
        await runs_db.finish_failed(conn, job=job, error=error)
