"""/v1/vector_stores/{id}/file_batches: create, retrieve, cancel, list files."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from prepshelf.api.chunking import resolve_chunking
from prepshelf.api.deps import ConnDep, PageDep, PollHint, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.schemas import FileBatchCreate
from prepshelf.api.stores import check_model, load_store
from prepshelf.api.views import file_batch_object, list_object, vector_store_file_object
from prepshelf.domain.vector_stores import FileBatch
from prepshelf.errors import NotFoundError
from prepshelf.ids import new_batch_id
from prepshelf.jobs.cancel import cancel_batch_jobs
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.store import file_batches as file_batches_db
from prepshelf.store import vector_stores as stores_db

router = APIRouter(
    prefix="/v1/vector_stores/{vector_store_id}/file_batches",
    tags=["vector_stores"],
    route_class=IdempotentRoute,
)


async def _load_batch(conn: Any, store_id: str, batch_id: str) -> FileBatch:
    found = await file_batches_db.get_file_batch(conn, store_id=store_id, file_batch_id=batch_id)
    if found is None:
        raise NotFoundError(f"No such file batch: {batch_id}", param="batch_id")
    return found


@router.post("", dependencies=[PollHint])
async def create_file_batch(
    vector_store_id: str,
    body: FileBatchCreate,
    request: Request,
    project: ProjectDep,
    conn: ConnDep,
) -> dict[str, Any]:
    store = await load_store(conn, project, vector_store_id)
    check_model(request, store)
    info = request.app.state.model_info
    if body.files is not None:
        items = [
            AttachItem(f.file_id, f.attributes or {}, resolve_chunking(f.chunking_strategy, info))
            for f in body.files
        ]
    else:
        chunking = resolve_chunking(body.chunking_strategy, info)
        items = [AttachItem(fid, body.attributes or {}, chunking) for fid in body.file_ids or []]
    batch_id = new_batch_id()
    async with conn.transaction():
        await file_batches_db.create_file_batch(
            conn, file_batch_id=batch_id, store_id=vector_store_id
        )
        await attach_files(
            request.app.state.queue,
            conn,
            project_id=project,
            store_id=vector_store_id,
            items=items,
            file_batch_id=batch_id,
            small_file_max_bytes=request.app.state.settings.small_file_max_bytes,
        )
    return file_batch_object(await _load_batch(conn, vector_store_id, batch_id))


@router.get("")
async def list_file_batches(
    vector_store_id: str, project: ProjectDep, conn: ConnDep, page: PageDep
) -> dict[str, Any]:
    """Beyond OpenAI: a store's batches, newest first (the dashboard's batch list)."""
    await load_store(conn, project, vector_store_id)
    result = await file_batches_db.list_file_batches(conn, store_id=vector_store_id, page=page)
    return list_object([file_batch_object(r) for r in result.rows], result.has_more)


@router.get("/{batch_id}", dependencies=[PollHint])
async def retrieve_file_batch(
    vector_store_id: str, batch_id: str, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    return file_batch_object(await _load_batch(conn, vector_store_id, batch_id))


@router.post("/{batch_id}/cancel", dependencies=[PollHint])
async def cancel_file_batch(
    vector_store_id: str, batch_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    await _load_batch(conn, vector_store_id, batch_id)
    await file_batches_db.mark_file_batch_cancel_requested(conn, file_batch_id=batch_id)
    await cancel_batch_jobs(request.app.state.queue, conn, batch_id=batch_id)
    return file_batch_object(await _load_batch(conn, vector_store_id, batch_id))


@router.get("/{batch_id}/files")
async def list_file_batch_files(
    vector_store_id: str,
    batch_id: str,
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    filter: Annotated[
        Literal["in_progress", "completed", "failed", "cancelled"] | None, Query()
    ] = None,
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    await _load_batch(conn, vector_store_id, batch_id)
    result = await stores_db.list_store_files(
        conn, store_id=vector_store_id, file_batch_id=batch_id, status=filter, page=page
    )
    return list_object([vector_store_file_object(r) for r in result.rows], result.has_more)
