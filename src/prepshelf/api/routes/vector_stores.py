"""/v1/vector_stores: create, list, retrieve, update, delete, search."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from prepshelf.api.chunking import resolve_chunking
from prepshelf.api.deps import ConnDep, PageDep, PollHint, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.schemas import SearchRequest, VectorStoreCreate, VectorStoreUpdate
from prepshelf.api.stores import load_store
from prepshelf.api.views import list_object, vector_store_object
from prepshelf.domain.vector_stores import VectorStore
from prepshelf.errors import InvalidRequestError, NotFoundError
from prepshelf.ids import new_vector_store_id
from prepshelf.jobs.cancel import cancel_jobs_of_store
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.settings import Settings
from prepshelf.store import hybrid as hybrid_db
from prepshelf.store import search as search_db
from prepshelf.store import vector_stores as stores_db
from prepshelf.store.hybrid import HybridWeights

router = APIRouter(prefix="/v1/vector_stores", tags=["vector_stores"], route_class=IdempotentRoute)


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
                file_batch_id=None,
                small_file_max_bytes=request.app.state.settings.small_file_max_bytes,
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
    await cancel_jobs_of_store(request.app.state.queue, conn, store_id=vector_store_id)
    await stores_db.delete_store(conn, project_id=project, store_id=vector_store_id)
    return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}


def _refuse_expired(store: VectorStore) -> None:
    if store.status(_now()) == "expired":
        raise InvalidRequestError(
            f"Vector store {store.id} has expired; it can no longer be searched",
            param="vector_store_id",
        )


def _hybrid_weights(body: SearchRequest, settings: Settings) -> HybridWeights | None:
    """Fusion weights, or None for vector-only search (the default unless configured)."""
    hybrid = body.ranking_options.hybrid_search if body.ranking_options else None
    if hybrid is not None:
        return HybridWeights(hybrid.embedding_weight, hybrid.text_weight)
    return HybridWeights(1.0, 1.0) if settings.search_hybrid_default else None


async def _search_one(
    conn: Any,
    *,
    store: VectorStore,
    query: str,
    vector: np.ndarray,
    body: SearchRequest,
    threshold: float,
    weights: HybridWeights | None,
    ef_search: int,
) -> list[dict[str, Any]]:
    return await hybrid_db.search(
        conn,
        store_id=store.id,
        dimensions=store.dimensions,
        query=query,
        query_vector=vector,
        limit=body.max_num_results,
        filters=body.filters,
        score_threshold=threshold,
        weights=weights,
        ef_search=ef_search,
    )


@router.post("/{vector_store_id}/search")
async def search_vector_store(
    vector_store_id: str,
    body: SearchRequest,
    request: Request,
    project: ProjectDep,
) -> dict[str, Any]:
    if body.rewrite_query:
        # OpenAI rewrites the query with a language model; there is none here, and silently
        # searching the unrewritten query would answer a different question.
        raise InvalidRequestError(
            "rewrite_query is not supported: prepshelf has no language model to rewrite "
            "queries with. Omit it (or send false) and pass the query you want searched; "
            "a list of up to 16 phrasings is searched together.",
            param="rewrite_query",
        )
    settings: Settings = request.app.state.settings
    search_db.check_filter_shape(
        body.filters,
        max_depth=settings.search_filter_max_depth,
        max_conditions=settings.search_filter_max_conditions,
    )
    pool = request.app.state.pool
    async with pool.connection() as conn:
        store = await load_store(conn, project, vector_store_id)
    _refuse_expired(store)
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    threshold = body.ranking_options.score_threshold if body.ranking_options else 0.0
    weights = _hybrid_weights(body, settings)
    # No pooled connection is held while the query waits for (and runs in) the model: a
    # caller's searches queued on the model must not hold the connections that everyone
    # else's status reads need.
    vectors: np.ndarray = await request.app.state.query_embedder.embed(queries)
    best: dict[tuple[str, int], dict[str, Any]] = {}
    async with pool.connection() as conn:
        for query, vector in zip(queries, vectors, strict=True):
            for hit in await _search_one(
                conn,
                store=store,
                query=query,
                vector=vector,
                body=body,
                threshold=threshold,
                weights=weights,
                ef_search=settings.search_ef_search,
            ):
                key = (hit["file_id"], hit["chunk_index"])
                if key not in best or hit["score"] > best[key]["score"]:
                    best[key] = hit
        await stores_db.touch_store(conn, vector_store_id)
    hits = sorted(best.values(), key=lambda h: h["score"], reverse=True)[: body.max_num_results]
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
