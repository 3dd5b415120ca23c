"""What every vector-store route checks first: the store exists in the caller's project
(another project's id answers 404), and it was built with the model this server embeds with."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from prepshelf.domain.vector_stores import VectorStore
from prepshelf.errors import ConflictError, NotFoundError
from prepshelf.store import vector_stores as stores_db


async def load_store(
    conn: Any, project: str, store_id: str, *, param: str = "vector_store_id"
) -> VectorStore:
    store = await stores_db.get_store(conn, project_id=project, store_id=store_id)
    if store is None:
        raise NotFoundError(f"No such vector store: {store_id}", param=param)
    return store


def check_model(request: Request, store: VectorStore, *, param: str = "vector_store_id") -> None:
    model = request.app.state.model_info.model_id
    if store.embedding_model != model:
        raise ConflictError(
            f"Vector store {store.id} was built with {store.embedding_model}; "
            f"this server embeds with {model}",
            param=param,
        )
