"""/v1/vector_stores/{id}/files: attach, list, retrieve, update attributes, remove, content."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from prepshelf.api.chunking import resolve_chunking
from prepshelf.api.deps import ConnDep, PageDep, PollHint, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.schemas import VectorStoreFileCreate, VectorStoreFileUpdate
from prepshelf.api.stores import check_model, load_store
from prepshelf.api.views import list_object, vector_store_file_object
from prepshelf.domain.vector_stores import VectorStoreFile
from prepshelf.errors import NotFoundError
from prepshelf.jobs.cancel import cancel_jobs_of_file
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.store import chunks as chunks_db
from prepshelf.store import vector_stores as stores_db

router = APIRouter(
    prefix="/v1/vector_stores/{vector_store_id}/files",
    tags=["vector_stores"],
    route_class=IdempotentRoute,
)

StatusFilter = Literal["in_progress", "completed", "failed", "cancelled"]


async def _load_file(conn: Any, store_id: str, file_id: str) -> VectorStoreFile:
    found = await stores_db.get_store_file(conn, store_id=store_id, file_id=file_id)
    if found is None:
        raise NotFoundError(f"No such file in vector store {store_id}: {file_id}", param="file_id")
    return found


@router.post("", dependencies=[PollHint])
async def create_vector_store_file(
    vector_store_id: str,
    body: VectorStoreFileCreate,
    request: Request,
    project: ProjectDep,
    conn: ConnDep,
) -> dict[str, Any]:
    store = await load_store(conn, project, vector_store_id)
    check_model(request, store)
    chunking = resolve_chunking(body.chunking_strategy, request.app.state.model_info)
    async with conn.transaction():
        await attach_files(
            request.app.state.queue,
            conn,
            project_id=project,
            store_id=vector_store_id,
            items=[AttachItem(body.file_id, body.attributes or {}, chunking)],
            file_batch_id=None,
            small_file_max_bytes=request.app.state.settings.small_file_max_bytes,
        )
    return vector_store_file_object(await _load_file(conn, vector_store_id, body.file_id))


@router.get("")
async def list_vector_store_files(
    vector_store_id: str,
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    filter: Annotated[StatusFilter | None, Query()] = None,
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    result = await stores_db.list_store_files(
        conn, store_id=vector_store_id, file_batch_id=None, status=filter, page=page
    )
    return list_object([vector_store_file_object(r) for r in result.rows], result.has_more)


@router.get("/{file_id}", dependencies=[PollHint])
async def retrieve_vector_store_file(
    vector_store_id: str, file_id: str, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    return vector_store_file_object(await _load_file(conn, vector_store_id, file_id))


@router.post("/{file_id}")
async def update_vector_store_file(
    vector_store_id: str,
    file_id: str,
    body: VectorStoreFileUpdate,
    project: ProjectDep,
    conn: ConnDep,
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    await _load_file(conn, vector_store_id, file_id)
    await stores_db.update_store_file_attributes(
        conn, store_id=vector_store_id, file_id=file_id, attributes=body.attributes or {}
    )
    return vector_store_file_object(await _load_file(conn, vector_store_id, file_id))


@router.delete("/{file_id}")
async def delete_vector_store_file(
    vector_store_id: str, file_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    await _load_file(conn, vector_store_id, file_id)
    await cancel_jobs_of_file(
        request.app.state.queue, conn, file_id=file_id, store_id=vector_store_id
    )
    # Its chunks cascade with the row, in the same statement: out of search at once.
    await stores_db.delete_store_file(conn, store_id=vector_store_id, file_id=file_id)
    return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}


@router.get("/{file_id}/content")
async def vector_store_file_content(
    vector_store_id: str, file_id: str, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    await _load_file(conn, vector_store_id, file_id)
    texts = await chunks_db.file_texts(conn, store_id=vector_store_id, file_id=file_id)
    return {
        "object": "vector_store.file_content.page",
        "data": [{"type": "text", "text": text} for text in texts],
        "has_more": False,
        "next_page": None,
    }
