"""/v1/jobs: every job's stage, progress, attempts and exact error; cancel and retry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from prepshelf.api.deps import ConnDep, PageDep, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.views import job_object, list_object
from prepshelf.domain.jobs import Job
from prepshelf.errors import ConflictError, NotFoundError
from prepshelf.jobs.cancel import cancel_jobs
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.store import job_readouts
from prepshelf.store import vector_stores as stores_db

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=IdempotentRoute)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


async def _load(conn: Any, project: str, job_id: str) -> Job:
    job = await job_readouts.get_job(conn, job_id=job_id, project_id=project)
    if job is None:
        raise NotFoundError(f"No such job: {job_id}", param="job_id")
    return job


@router.get("")
async def list_jobs(
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    status: Annotated[JobStatus | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    vector_store_id: Annotated[str | None, Query(max_length=128)] = None,
    file_batch_id: Annotated[
        str | None, Query(max_length=128, description="Jobs of this vector-store file batch")
    ] = None,
    batch_id: Annotated[
        str | None,
        Query(
            max_length=128,
            description="The job of this /v1/batches batch; a file batch id matches too (as "
            "before file_batch_id existed)",
        ),
    ] = None,
    file_id: Annotated[str | None, Query(max_length=128)] = None,
    created_after: Annotated[int | None, Query(ge=0, description="Unix seconds")] = None,
) -> dict[str, Any]:
    filters = job_readouts.JobFilter(
        status=status,
        kind=kind,
        vector_store_id=vector_store_id,
        file_batch_id=file_batch_id,
        batch_id=batch_id,
        file_id=file_id,
        created_after=created_after,
    )
    result = await job_readouts.list_jobs(conn, project_id=project, filters=filters, page=page)
    return list_object([job_object(r) for r in result.rows], result.has_more)


@router.get("/{job_id}")
async def retrieve_job(job_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    return job_object(await _load(conn, project, job_id))


@router.post("/{job_id}/cancel")
async def cancel_job(
    job_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await _load(conn, project, job_id)
    await cancel_jobs(request.app.state.queue, conn, [job_id])
    return job_object(await _load(conn, project, job_id))


@router.post("/{job_id}/retry")
async def retry_job(
    job_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    """Run a failed or cancelled file again, as a new job (the old one keeps its history)."""
    job = await _load(conn, project, job_id)
    if job.status not in ("failed", "cancelled"):
        raise ConflictError(
            f"Job {job_id} is {job.status}; only failed or cancelled jobs can be retried",
            param="job_id",
        )
    store_id, file_id = job.vector_store_id, job.file_id
    vsf = None
    if store_id is not None and file_id is not None:  # batches and runs serve no file
        vsf = await stores_db.get_store_file(
            conn, store_id=store_id, file_id=file_id, job_id=job_id
        )
    if vsf is None or store_id is None or file_id is None:
        raise ConflictError(
            f"Job {job_id} is no longer the latest for its file, or the file left the store",
            param="job_id",
        )
    async with conn.transaction():
        await attach_files(
            request.app.state.queue,
            conn,
            project_id=project,
            store_id=store_id,
            items=[AttachItem(file_id, vsf.attributes, vsf.chunking_strategy)],
            file_batch_id=vsf.file_batch_id,
            small_file_max_bytes=request.app.state.settings.small_file_max_bytes,
        )
    new = await stores_db.get_store_file(conn, store_id=store_id, file_id=file_id)
    assert new is not None and new.job_id is not None  # attach_files just gave it a job
    return job_object(await _load(conn, project, new.job_id))
