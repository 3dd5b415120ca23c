"""/v1/batches: the long path for /v1/embeddings, as OpenAI's Batch API (create, retrieve,
cancel, list). The work runs on the workers; each batch also has a row in /v1/jobs."""

from __future__ import annotations

import secrets
from typing import Any, Literal, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from prepshelf.api.deps import ConnDep, PageDep, PollHint, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.schemas import Metadata
from prepshelf.api.views import batch_object, list_object
from prepshelf.domain.batches import Batch
from prepshelf.domain.upstreams import Endpoint, UpstreamConfig
from prepshelf.errors import ConflictError, InvalidRequestError, NotFoundError
from prepshelf.ids import new_job_id
from prepshelf.jobs.batch_embed import ENDPOINT, UPSTREAM_ENDPOINTS, defer_batch_job
from prepshelf.store import batches as batches_db
from prepshelf.store import files as files_db
from prepshelf.store import jobs as jobs_db

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=IdempotentRoute)

_OTHER_ENDPOINTS = {
    "/v1/responses",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
}


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(max_length=128)
    endpoint: str = Field(max_length=128)
    completion_window: Literal["24h"]
    metadata: Metadata | None = None


def _check_endpoint(endpoint: str, upstreams: UpstreamConfig) -> None:
    """Embeddings always (the worker's own model); chat and completions when an upstream
    model serves them (each line's model is checked when it runs)."""
    if endpoint == ENDPOINT:
        return
    if endpoint in UPSTREAM_ENDPOINTS:
        if upstreams.models_for(cast(Endpoint, endpoint)):
            return
        raise InvalidRequestError(
            f"Invalid 'endpoint' {endpoint!r}: no configured upstream model serves it "
            "(docs/upstreams.md; GET /v1/models lists what is served)",
            param="endpoint",
        )
    served = [
        ENDPOINT,
        *(
            e
            for e in UPSTREAM_ENDPOINTS
            if e != ENDPOINT and upstreams.models_for(cast(Endpoint, e))
        ),
    ]
    supported = (
        "is not supported by this server"
        if endpoint in _OTHER_ENDPOINTS
        else "is not a batch endpoint"
    )
    raise InvalidRequestError(
        f"Invalid 'endpoint' {endpoint!r}: it {supported}; served here: "
        + ", ".join(repr(e) for e in served),
        param="endpoint",
    )


async def _load(conn: Any, project: str, batch_id: str) -> Batch:
    batch = await batches_db.get_batch(conn, batch_id=batch_id, project_id=project)
    if batch is None:
        raise NotFoundError(f"No batch found with id '{batch_id}'.", param="batch_id")
    if batch.status not in batches_db.FINAL and await batches_db.settle_with_job(
        conn, batch_id=batch_id
    ):
        batch = await batches_db.get_batch(conn, batch_id=batch_id, project_id=project)
        assert batch is not None
    return batch


@router.post("")
async def create_batch(
    body: BatchCreate, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    _check_endpoint(body.endpoint, request.app.state.upstreams)
    file = await files_db.get_file(conn, project_id=project, file_id=body.input_file_id)
    if file is None:
        raise NotFoundError(f"No such File object: {body.input_file_id}", param="input_file_id")
    if file.purpose != "batch":
        raise InvalidRequestError(
            f"File {body.input_file_id} has purpose {file.purpose!r}; a batch input file "
            "must be uploaded with purpose 'batch'",
            param="input_file_id",
        )
    batch_id, job_id = f"batch_{secrets.token_hex(16)}", new_job_id()
    async with conn.transaction():
        await jobs_db.create_embed_batch_job(
            conn, job_id=job_id, project_id=project, batch_id=batch_id
        )
        batch = await batches_db.insert_batch(
            conn,
            batch_id=batch_id,
            project_id=project,
            endpoint=body.endpoint,
            input_file_id=body.input_file_id,
            completion_window=body.completion_window,
            window_s=request.app.state.settings.batch_completion_window_s,
            metadata=body.metadata,
            job_id=job_id,
        )
        queue_id = await defer_batch_job(request.app.state.queue, conn, job_id, project_id=project)
        await jobs_db.set_queue_job_ids(conn, [(job_id, queue_id)])
    return batch_object(batch)


@router.get("")
async def list_batches(project: ProjectDep, conn: ConnDep, page: PageDep) -> dict[str, Any]:
    result = await batches_db.list_batches(conn, project_id=project, page=page)
    return list_object([batch_object(b) for b in result.rows], result.has_more)


@router.get("/{batch_id}", dependencies=[PollHint])
async def retrieve_batch(batch_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    return batch_object(await _load(conn, project, batch_id))


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    """Ask the batch to stop; a worker ends it between slices, writing the partial output."""
    batch = await _load(conn, project, batch_id)
    if batch.status in ("completed", "failed", "expired"):
        raise ConflictError(
            f"Cannot cancel a batch with status '{batch.status}'.", param="batch_id"
        )
    await batches_db.request_cancel(conn, batch_id=batch_id)
    return batch_object(await _load(conn, project, batch_id))
