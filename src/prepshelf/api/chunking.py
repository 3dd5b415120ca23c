"""Resolve a request's chunking_strategy into the stored (static) form for this model."""

from __future__ import annotations

from typing import Any

from prepshelf.api.schemas import ChunkingStrategyParam
from prepshelf.pipeline.chunk import validate_strategy
from prepshelf.pipeline.model_info import ModelInfo


def resolve_chunking(param: ChunkingStrategyParam | None, info: ModelInfo) -> dict[str, Any]:
    """`auto` fits the model's window; `static` is refused (400) when the model cannot take it."""
    if param is None or param.type == "auto":
        max_tokens, overlap = info.max_chunk_tokens, info.auto_overlap_tokens
    else:
        max_tokens = param.static.max_chunk_size_tokens
        overlap = param.static.chunk_overlap_tokens
        validate_strategy(max_tokens, overlap, info.max_chunk_tokens, info.model_id)
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": max_tokens, "chunk_overlap_tokens": overlap},
    }
