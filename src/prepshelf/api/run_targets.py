"""What a schedule or an eval points at, checked before anything is written: the store (and
that this server embeds with its model), the eval, the sync source."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from prepshelf.api.chunking import resolve_chunking
from prepshelf.api.schedule_schemas import SourceSyncParams
from prepshelf.api.stores import check_model, load_store
from prepshelf.domain.evals import Eval
from prepshelf.domain.schedules import SyncParams
from prepshelf.domain.vector_stores import VectorStore
from prepshelf.errors import NotFoundError
from prepshelf.store import evals as evals_db
from prepshelf.store.sources import resolve_source


async def checked_store(
    conn: Any, request: Request, project: str, store_id: str, *, param: str
) -> VectorStore:
    store = await load_store(conn, project, store_id, param=param)
    check_model(request, store, param=param)
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
