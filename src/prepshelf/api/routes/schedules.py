"""/v1/schedules: cron schedules that start source syncs and evaluation runs.

Each due time starts one run, a job like any other (/v1/jobs, events, /ui, metrics) linked to
its schedule; the workers' scanner starts them (jobs/schedules.py). "Run now" starts one at
once. A schedule never has two runs at a time: due times that pass while a run is going, or
while no worker runs, are caught up by one run as soon as possible (`catch_up: "once"`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from prepshelf.api.deps import ConnDep, PageDep, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.run_targets import checked_eval, checked_store, sync_params
from prepshelf.api.run_views import schedule_object
from prepshelf.api.schedule_schemas import (
    EvalRunParams,
    ScheduleCreate,
    ScheduleUpdate,
    SourceSyncParams,
    parse_params,
)
from prepshelf.api.views import job_object, list_object
from prepshelf.domain import cron
from prepshelf.domain.schedules import EvalRunParams as EvalRunTarget
from prepshelf.domain.schedules import Schedule
from prepshelf.errors import ConflictError, InvalidRequestError, NotFoundError
from prepshelf.ids import new_schedule_id
from prepshelf.jobs.runs import start_run
from prepshelf.store import job_readouts
from prepshelf.store import runs as runs_db
from prepshelf.store import schedules as schedules_db

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], route_class=IdempotentRoute)


async def _load(conn: Any, project: str, schedule_id: str, *, lock: bool = False) -> Schedule:
    found = await schedules_db.get_schedule(
        conn, project_id=project, schedule_id=schedule_id, for_update=lock
    )
    if found is None:
        raise NotFoundError(f"No such schedule: {schedule_id}", param="schedule_id")
    return found


async def _params(
    conn: Any, request: Request, project: str, params: SourceSyncParams | EvalRunParams
) -> dict[str, Any]:
    """Check what the params point at; return them as stored (chunking resolved)."""
    if isinstance(params, SourceSyncParams):
        return (await sync_params(conn, request, project, params)).to_json()
    evaluation = await checked_eval(conn, project, params.eval_id, param="params.eval_id")
    store_id = params.vector_store_id or evaluation.vector_store_id
    if store_id is None:
        raise InvalidRequestError(
            f"Eval {evaluation.id} names no vector store; give params.vector_store_id",
            param="params.vector_store_id",
        )
    await checked_store(conn, request, project, store_id, param="params.vector_store_id")
    return EvalRunTarget(eval_id=params.eval_id, vector_store_id=params.vector_store_id).to_json()


def _first_due(request: Request, cron_expr: str, timezone: str) -> datetime:
    return cron.validate(
        cron_expr,
        timezone,
        min_interval_s=request.app.state.settings.schedule_min_interval_s,
        now=datetime.now(UTC),
    )


@router.post("")
async def create_schedule(
    body: ScheduleCreate, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    next_run_at = _first_due(request, body.cron, body.timezone)
    params = await _params(conn, request, project, parse_params(body.kind, body.params))
    created = await schedules_db.insert_schedule(
        conn,
        schedule_id=new_schedule_id(),
        project_id=project,
        name=body.name,
        kind=body.kind,
        params=params,
        cron=body.cron,
        timezone=body.timezone,
        next_run_at=next_run_at,
        paused=body.paused,
        metadata=body.metadata or {},
    )
    return schedule_object(created)


@router.get("")
async def list_schedules(
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    kind: Annotated[Literal["source_sync", "eval_run"] | None, Query()] = None,
) -> dict[str, Any]:
    found, has_more = await schedules_db.list_schedules(
        conn, project_id=project, page=page, kind=kind
    )
    return list_object([schedule_object(s) for s in found], has_more)


@router.get("/{schedule_id}")
async def retrieve_schedule(schedule_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    return schedule_object(await _load(conn, project, schedule_id))


@router.post("/{schedule_id}")
async def update_schedule(
    schedule_id: str, body: ScheduleUpdate, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    """Change fields; a new cron or time zone counts from now (missed due times are not run)."""
    current = await _load(conn, project, schedule_id)
    fields = body.model_dump(exclude_unset=True)
    cron_expr = body.cron or current.cron
    timezone = body.timezone or current.timezone
    next_run_at = current.next_run_at
    if "cron" in fields or "timezone" in fields:
        next_run_at = _first_due(request, cron_expr, timezone)
    params = current.params
    if body.params is not None:
        params = await _params(conn, request, project, parse_params(current.kind, body.params))
    async with conn.transaction():
        await _load(conn, project, schedule_id, lock=True)
        updated = await schedules_db.update_schedule(
            conn,
            schedule_id=schedule_id,
            name=body.name if "name" in fields else current.name,
            params=params,
            cron=cron_expr,
            timezone=timezone,
            next_run_at=next_run_at,
            metadata=body.metadata if body.metadata is not None else current.metadata,
        )
    return schedule_object(updated)


@router.delete("/{schedule_id}")
async def delete_schedule(schedule_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    """Delete the schedule; its runs stay in /v1/jobs (a run in progress goes on)."""
    if not await schedules_db.delete_schedule(conn, project_id=project, schedule_id=schedule_id):
        raise NotFoundError(f"No such schedule: {schedule_id}", param="schedule_id")
    return {"id": schedule_id, "object": "schedule.deleted", "deleted": True}


@router.post("/{schedule_id}/pause")
async def pause_schedule(schedule_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    """No run starts while paused; a run already going goes on."""
    async with conn.transaction():
        await _load(conn, project, schedule_id, lock=True)
        paused = await schedules_db.set_paused(
            conn, schedule_id=schedule_id, paused=True, next_run_at=None
        )
    return schedule_object(paused)


@router.post("/{schedule_id}/resume")
async def resume_schedule(
    schedule_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    """Due again from the next due time after now: times missed while paused are skipped."""
    async with conn.transaction():
        current = await _load(conn, project, schedule_id, lock=True)
        if current.paused_at is None:
            return schedule_object(current)
        next_run_at = cron.next_due(current.cron, current.timezone, datetime.now(UTC))
        resumed = await schedules_db.set_paused(
            conn, schedule_id=schedule_id, paused=False, next_run_at=next_run_at
        )
    return schedule_object(resumed)


@router.post("/{schedule_id}/run")
async def run_schedule_now(
    schedule_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    """Start a run at once (also when paused); the next due time stays as it was. Refused
    (409) while the schedule's previous run is still queued or running."""
    async with conn.transaction():
        current = await _load(conn, project, schedule_id, lock=True)
        active = await runs_db.active_run_of_schedule(conn, schedule_id=schedule_id)
        if active is not None:
            raise ConflictError(
                f"Schedule {schedule_id} has a run in progress: job {active}", param="schedule_id"
            )
        started = await start_run(
            request.app.state.queue,
            conn,
            project_id=project,
            kind=current.kind,
            params=current.params,
            schedule_id=schedule_id,
        )
        await schedules_db.note_run_started(conn, schedule_id=schedule_id)
    job = await job_readouts.get_job(conn, job_id=started.job_id)
    assert job is not None
    return job_object(job)


@router.get("/{schedule_id}/runs")
async def list_schedule_runs(
    schedule_id: str, project: ProjectDep, conn: ConnDep, page: PageDep
) -> dict[str, Any]:
    """The schedule's runs, newest first: jobs as /v1/jobs shows them (a sync's report is
    the job's `result`)."""
    await _load(conn, project, schedule_id)
    result = await runs_db.list_schedule_runs(conn, schedule_id=schedule_id, page=page)
    return list_object([job_object(r) for r in result.rows], result.has_more)
