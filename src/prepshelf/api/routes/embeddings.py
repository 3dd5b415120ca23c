"""POST /v1/embeddings: the short path, computed in the API process with its lazy model.

Anything larger than one request's limits gets a 413 that points to /v1/batches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from prepshelf.api.deps import ProjectDep
from prepshelf.errors import InvalidRequestError, PayloadTooLargeError
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.embedding_request import EmbeddingLimits, parse_request, response_body
from prepshelf.pipeline.tokenizer import load_tokenizer

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
    settings = request.app.state.settings
    info = request.app.state.model_info
    return EmbeddingLimits(
        model_ids=frozenset({info.model_id}),
        dimensions=info.dimensions,
        max_input_tokens=info.max_chunk_tokens,
        max_inputs=settings.embeddings_max_inputs,
        max_total_tokens=settings.embeddings_max_tokens,
        too_large_hint=_HINT,
    )


async def _json_body(request: Request) -> Any:
    limit = request.app.state.settings.max_json_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLargeError(
                f"The request body is larger than {limit} bytes.{_HINT}", param="input"
            )
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidRequestError("We could not parse the JSON body of your request.") from exc


@router.post("", openapi_extra=_BODY)
async def create_embeddings(request: Request, project: ProjectDep) -> Response:
    settings = request.app.state.settings
    tokenizer = load_tokenizer(Path(settings.model_dir or default_model_dir()))
    req = parse_request(await _json_body(request), limits=_limits(request), tokenizer=tokenizer)
    vectors = await request.app.state.query_embedder.embed(req.texts)
    body = json.dumps(response_body(req, vectors), separators=(",", ":"))
    return Response(body, media_type="application/json")
