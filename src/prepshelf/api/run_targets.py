"""What a schedule or an eval points at, checked before anything is written: the store (and
that this server embeds with its model), the eval, the sync source."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from prepshelf.api.chunking import resolve_chunking
from prepshelf.api.schedule_schemas import SourceSyncParams
from prepshelf.domain.evals import Eval
from prepshelf.domain.schedules import SyncParams
from prepshelf.errors import ConflictError, NotFoundError
from prepshelf.store import evals as evals_db
from prepshelf.store import vector_stores as stores_db
from prepshelf.store.sources import resolve_source


async def checked_store(
    conn: Any, request: Request, project: str, store_id: str, *, param: str
) -> dict[str, Any]:
    store = await stores_db.get_store(conn, project_id=project, store_id=store_id)
    if store is None:
        raise NotFoundError(f"No such vector store: {store_id}", param=param)
    model = request.app.state.model_info.model_id
    if store["embedding_model"] != model:
        raise ConflictError(
            f"Vector store {store_id} was built with {store['embedding_model']}; "
            f"this server embeds with {model}",
            param=param,
        )
    return store


async def checked_eval(conn: Any, project: str, eval_id: str, *, param: str) -> Eval:
    found = await evals_db.get_eval(conn, project_id=project, eval_id=eval_id)
    if found is None:
        raise NotFoundError(f"No such eval: {eval_id}", param=param)
    return found


async def sync_params(
    conn: Any, request: Request, project: str, body: SourceSyncParams
) -> SyncParams:
    await checked_store(
        conn, request, project, body.vector_store_id, param="params.vector_store_id"
    )
    roots = request.app.state.settings.sync_roots
    return SyncParams(
        vector_store_id=body.vector_store_id,
        source=resolve_source(body.source, roots),
        chunking_strategy=resolve_chunking(body.chunking_strategy, request.app.state.model_info),
    )
