"""What every vector-store route checks first: the store exists in the caller's project
(another project's id answers 404), and it was built with the model this server embeds with."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from prepshelf.errors import ConflictError, NotFoundError
from prepshelf.store import vector_stores as stores_db


async def load_store(conn: Any, project: str, store_id: str) -> dict[str, Any]:
    row = await stores_db.get_store(conn, project_id=project, store_id=store_id)
    if row is None:
        raise NotFoundError(f"No such vector store: {store_id}", param="vector_store_id")
    return row


def check_model(request: Request, store: dict[str, Any]) -> None:
    model = request.app.state.model_info.model_id
    if store["embedding_model"] != model:
        raise ConflictError(
            f"Vector store {store['id']} was built with {store['embedding_model']}; "
            f"this server embeds with {model}",
            param="vector_store_id",
        )
