"""/v1/jobs: every job's stage, progress, attempts and exact error; cancel and retry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from prepshelf.api.deps import ConnDep, PageDep, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.views import job_object, list_object
from prepshelf.errors import ConflictError, NotFoundError
from prepshelf.jobs.cancel import cancel_jobs
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.store import jobs as jobs_db
from prepshelf.store.pages import fetch_page

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=IdempotentRoute)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


async def _load(conn: Any, project: str, job_id: str) -> dict[str, Any]:
    row = await jobs_db.get_job(conn, job_id=job_id, project_id=project)
    if row is None:
        raise NotFoundError(f"No such job: {job_id}", param="job_id")
    return row


@router.get("")
async def list_jobs(
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    status: Annotated[JobStatus | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    vector_store_id: Annotated[str | None, Query(max_length=128)] = None,
    batch_id: Annotated[str | None, Query(max_length=128)] = None,
    file_id: Annotated[str | None, Query(max_length=128)] = None,
    created_after: Annotated[int | None, Query(ge=0, description="Unix seconds")] = None,
) -> dict[str, Any]:
    where: list[str] = ["project_id = %s"]
    params: list[Any] = [project]
    if created_after is not None:
        where.append("created_at >= to_timestamp(%s)")
        params.append(created_after)
    for column, value in (
        ("status", status),
        ("kind", kind),
        ("vector_store_id", vector_store_id),
        ("batch_id", batch_id),
        ("file_id", file_id),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    result = await fetch_page(
        conn,
        select="SELECT * FROM jobs",
        where=" AND ".join(where),
        params=params,
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM jobs WHERE project_id = %s AND id = %s",
        cursor_params=[project],
        page=page,
    )
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
    if job["status"] not in ("failed", "cancelled"):
        raise ConflictError(
            f"Job {job_id} is {job['status']}; only failed or cancelled jobs can be retried",
            param="job_id",
        )
    vsf = await (
        await conn.execute(
            "SELECT * FROM vector_store_files WHERE vector_store_id = %s AND file_id = %s "
            "AND job_id = %s",
            [job["vector_store_id"], job["file_id"], job_id],
        )
    ).fetchone()
    if vsf is None:
        raise ConflictError(
            f"Job {job_id} is no longer the latest for its file, or the file left the store",
            param="job_id",
        )
    async with conn.transaction():
        await attach_files(
            request.app.state.queue,
            conn,
            project_id=project,
            store_id=job["vector_store_id"],
            items=[AttachItem(job["file_id"], vsf["attributes"], vsf["chunking_strategy"])],
            batch_id=vsf["batch_id"],
        )
    new = await (
        await conn.execute(
            "SELECT job_id FROM vector_store_files WHERE vector_store_id = %s AND file_id = %s",
            [job["vector_store_id"], job["file_id"]],
        )
    ).fetchone()
    assert new is not None
    return job_object(await _load(conn, project, new["job_id"]))
