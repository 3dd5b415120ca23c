"""GET /v1/models and /v1/models/{id}: the embedding model this server serves, in OpenAI's shape.

Clients and UIs that list models first (Open WebUI, LibreChat, litellm's health checks) find
it here; extra fields say what OpenAI's objects cannot: the vector size, the model's window
and how long inputs and token-id arrays are read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from prepshelf.api.deps import ProjectDep
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.embedding_request import model_not_found
from prepshelf.settings import Settings

router = APIRouter(prefix="/v1/models", tags=["models"])


def _created(settings: Settings) -> int:
    """When the model files were made (stable across restarts); for a remote model, now."""
    if settings.embedder == "local":
        config = Path(settings.model_dir or default_model_dir()) / "config.json"
        try:
            return int(config.stat().st_mtime)
        except OSError:
            pass
    return int(time.time())


def served_models(request: Request) -> list[dict[str, Any]]:
    settings: Settings = request.app.state.settings
    info = request.app.state.model_info
    return [
        {
            "id": info.model_id,
            "object": "model",
            "created": _created(settings),
            "owned_by": "prepshelf",
            # Beyond OpenAI's shape:
            "type": "embedding",
            "dimensions": info.dimensions,
            "max_input_tokens": info.max_chunk_tokens,
            "embedder": settings.embedder,
            "long_input": settings.embeddings_long_input,
            "token_ids": settings.embeddings_token_ids,
            "max_inputs_per_request": settings.embeddings_max_inputs,
            "max_tokens_per_request": settings.embeddings_max_tokens,
        }
    ]


@router.get("")
async def list_models(request: Request, project: ProjectDep) -> dict[str, Any]:
    return {"object": "list", "data": served_models(request)}


@router.get("/{model_id:path}")
async def retrieve_model(model_id: str, request: Request, project: ProjectDep) -> dict[str, Any]:
    models = served_models(request)
    for model in models:
        if model["id"] == model_id:
            return model
    raise model_not_found(model_id, [m["id"] for m in models])
