"""/v1/vector_stores: create, list, retrieve, update, delete, search."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from prepshelf.api.chunking import resolve_chunking
from prepshelf.api.deps import ConnDep, PageDep, PollHint, ProjectDep
from prepshelf.api.schemas import SearchRequest, VectorStoreCreate, VectorStoreUpdate
from prepshelf.api.views import list_object, vector_store_object
from prepshelf.errors import NotFoundError
from prepshelf.ids import new_vector_store_id
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.store import search as search_db
from prepshelf.store import vector_stores as stores_db

router = APIRouter(prefix="/v1/vector_stores", tags=["vector_stores"])


async def load_store(conn: Any, project: str, store_id: str) -> dict[str, Any]:
    row = await stores_db.get_store(conn, project_id=project, store_id=store_id)
    if row is None:
        raise NotFoundError(f"No such vector store: {store_id}", param="vector_store_id")
    return row


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("", dependencies=[PollHint])
async def create_vector_store(
    body: VectorStoreCreate, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    info = request.app.state.model_info
    chunking = resolve_chunking(body.chunking_strategy, info)
    store_id = new_vector_store_id()
    async with conn.transaction():
        await stores_db.create_store(
            conn,
            store_id=store_id,
            project_id=project,
            name=body.name,
            description=body.description,
            metadata=body.metadata,
            expires_after=body.expires_after.model_dump() if body.expires_after else None,
            embedding_model=info.model_id,
            dimensions=info.dimensions,
        )
        if body.file_ids:
            await attach_files(
                request.app.state.queue,
                conn,
                project_id=project,
                store_id=store_id,
                items=[AttachItem(fid, {}, chunking) for fid in body.file_ids],
                batch_id=None,
            )
    return vector_store_object(await load_store(conn, project, store_id), _now())


@router.get("")
async def list_vector_stores(project: ProjectDep, conn: ConnDep, page: PageDep) -> dict[str, Any]:
    result = await stores_db.list_stores(conn, project_id=project, page=page)
    now = _now()
    return list_object([vector_store_object(r, now) for r in result.rows], result.has_more)


@router.get("/{vector_store_id}", dependencies=[PollHint])
async def retrieve_vector_store(
    vector_store_id: str, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    return vector_store_object(await load_store(conn, project, vector_store_id), _now())


@router.post("/{vector_store_id}")
async def update_vector_store(
    vector_store_id: str, body: VectorStoreUpdate, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    if not await stores_db.update_store(
        conn, project_id=project, store_id=vector_store_id, fields=fields
    ):
        raise NotFoundError(f"No such vector store: {vector_store_id}", param="vector_store_id")
    return vector_store_object(await load_store(conn, project, vector_store_id), _now())


@router.delete("/{vector_store_id}")
async def delete_vector_store(
    vector_store_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await load_store(conn, project, vector_store_id)
    from prepshelf.jobs.cancel import cancel_jobs

    rows = await (
        await conn.execute(
            "SELECT id FROM jobs WHERE vector_store_id = %s AND status IN ('queued', 'running')",
            [vector_store_id],
        )
    ).fetchall()
    await cancel_jobs(request.app.state.queue, conn, [r["id"] for r in rows])
    await stores_db.delete_store(conn, project_id=project, store_id=vector_store_id)
    return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}


@router.post("/{vector_store_id}/search")
async def search_vector_store(
    vector_store_id: str,
    body: SearchRequest,
    request: Request,
    project: ProjectDep,
    conn: ConnDep,
) -> dict[str, Any]:
    store = await load_store(conn, project, vector_store_id)
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    threshold = body.ranking_options.score_threshold if body.ranking_options else 0.0
    vectors: np.ndarray = await request.app.state.query_embedder.embed(queries)
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for vector in vectors:
        for hit in await search_db.search_chunks(
            conn,
            store_id=vector_store_id,
            dimensions=store["dimensions"],
            query_vector=vector,
            limit=body.max_num_results,
            filters=body.filters,
            score_threshold=threshold,
        ):
            key = (hit["file_id"], hit["chunk_index"])
            if key not in best or hit["score"] > best[key]["score"]:
                best[key] = hit
    hits = sorted(best.values(), key=lambda h: h["score"], reverse=True)[: body.max_num_results]
    await stores_db.touch_store(conn, vector_store_id)
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": [
            {
                "file_id": h["file_id"],
                "filename": h["filename"],
                "score": max(0.0, min(1.0, float(h["score"]))),
                "attributes": h["attributes"],
                "content": [{"type": "text", "text": h["text"]}],
            }
            for h in hits
        ],
        "has_more": False,
        "next_page": None,
    }
