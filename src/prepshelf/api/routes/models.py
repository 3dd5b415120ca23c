"""GET /v1/models and /v1/models/{id}: every model this server serves, in OpenAI's shape.

Clients and UIs that list models first (Open WebUI, LibreChat, litellm's health checks) find
them here. The embedding model the server runs itself comes first; extra fields say what
OpenAI's objects cannot: the vector size, the model's window and how long inputs and token-id
arrays are read. Then the models of the configured upstreams (docs/upstreams.md), with
`type` (chat, completion, embedding, transcription), the `endpoints` they are configured for
(what a batch line or a transcription may use them with) and, for embedding models, the
`dimensions` when configured.

What is never shown, to any key: an upstream's URL, name, key or limits, and the name a model
has upstream. They describe the operator's infrastructure and credentials, not the model a
client asks for; `served_by` says only who answers: `embedder` (the server's own embedding
model, local or remote as `embedder` says) or `upstream`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from prepshelf.api.deps import ProjectDep
from prepshelf.domain.upstreams import UpstreamConfig
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


def _config_created(settings: Settings) -> int:
    """When the upstream configuration file last changed (stable across restarts); else 0."""
    if settings.upstreams_file is not None:
        try:
            return int(settings.upstreams_file.stat().st_mtime)
        except OSError:
            pass
    return 0


def _upstream_models(settings: Settings, config: UpstreamConfig) -> list[dict[str, Any]]:
    created = _config_created(settings)
    models = []
    for model in config.models:
        entry: dict[str, Any] = {
            "id": model.id,
            "object": "model",
            "created": created,
            "owned_by": "prepshelf",
            # Beyond OpenAI's shape:
            "type": model.kind,
            "endpoints": list(model.endpoints),
            "served_by": "upstream",
        }
        if model.dimensions is not None:
            entry["dimensions"] = model.dimensions
        models.append(entry)
    return models


def served_models(request: Request) -> list[dict[str, Any]]:
    settings: Settings = request.app.state.settings
    info = request.app.state.model_info
    upstreams: UpstreamConfig = request.app.state.upstreams
    local = [
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
            "endpoints": ["/v1/embeddings"],
            "served_by": "embedder",  # the server's own embedder (see `embedder`)
        }
    ]
    return local + _upstream_models(settings, upstreams)


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
