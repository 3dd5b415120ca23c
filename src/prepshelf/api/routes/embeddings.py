"""POST /v1/embeddings: computed in the API process with its query model.

OpenAI's limits (2,048 inputs, 300,000 tokens per request); anything larger gets a 400 that
points to /v1/batches. Rules and policies: `pipeline/embedding_request.py`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from prepshelf.api.deps import ProjectDep
from prepshelf.errors import InvalidRequestError, PayloadTooLargeError
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.embedding_plan import iter_input_vectors
from prepshelf.pipeline.embedding_request import EmbeddingLimits, parse_request, render_response
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.settings import Settings

router = APIRouter(prefix="/v1/embeddings", tags=["embeddings"])

_HINT = (
    " Send large jobs as a batch instead: upload a JSONL file (purpose 'batch') and "
    "POST /v1/batches with endpoint '/v1/embeddings'."
)

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "input"],
                    "properties": {
                        "model": {"type": "string"},
                        "input": {
                            "oneOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}},
                                {"type": "array", "items": {"type": "integer"}},
                                {
                                    "type": "array",
                                    "items": {"type": "array", "items": {"type": "integer"}},
                                },
                            ]
                        },
                        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                        "dimensions": {"type": "integer"},
                        "user": {"type": "string"},
                    },
                }
            }
        },
    }
}


def _limits(request: Request) -> EmbeddingLimits:
    settings: Settings = request.app.state.settings
    info = request.app.state.model_info
    return EmbeddingLimits(
        model_ids=frozenset({info.model_id}),
        dimensions=info.dimensions,
        max_input_tokens=info.max_chunk_tokens,
        max_inputs=settings.embeddings_max_inputs,
        max_total_tokens=settings.embeddings_max_tokens,
        too_large_hint=_HINT,
        token_ids=settings.embeddings_token_ids,
        long_input=settings.embeddings_long_input,
    )


async def _read_body(request: Request) -> bytes:
    limit = request.app.state.settings.embeddings_max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLargeError(
                f"The request body is larger than {limit} bytes.{_HINT}", param="input"
            )
    return bytes(body)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidRequestError("We could not parse the JSON body of your request.") from exc


@router.post("", openapi_extra=_BODY)
async def create_embeddings(request: Request, project: ProjectDep) -> Response:
    settings: Settings = request.app.state.settings
    raw = await _read_body(request)
    limits = _limits(request)
    tokenizer = load_tokenizer(Path(settings.model_dir or default_model_dir()))
    embedder = request.app.state.query_embedder

    def compute() -> bytes:
        # Parsing (up to 300,000 tokens) and embedding run off the event loop; vectors are
        # encoded into the answer as each model batch comes back.
        req = parse_request(_json(raw), limits=limits, tokenizer=tokenizer)
        vectors = iter_input_vectors(
            [req], embedder.embed_blocking, batch_size=settings.embed_batch_size
        )
        return render_response(req, ((i, vec) for _, i, vec in vectors))

    return Response(await asyncio.to_thread(compute), media_type="application/json")
