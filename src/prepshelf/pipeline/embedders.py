"""Choose the embedder from settings: the packaged local model (on torch or onnxruntime) or a
remote OpenAI-compatible API.

Chunk sizes are always counted with the local packaged tokenizer, also for a remote model whose
own tokenizer differs: the remote window setting should leave some margin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prepshelf.pipeline.embed import (
    Embedder,
    FakeEmbedder,
    LocalEmbedder,
    _count_tokens,
    default_model_dir,
)
from prepshelf.pipeline.model_info import SPECIAL_TOKENS, ModelInfo, read_model_info
from prepshelf.settings import Settings


def _model_dir(settings: Settings) -> Path:
    return Path(settings.model_dir or default_model_dir())


def _check_remote(settings: Settings) -> None:
    missing = [
        name
        for name, value in (
            ("PREPSHELF_REMOTE_EMBED_URL", settings.remote_embed_url),
            ("PREPSHELF_REMOTE_EMBED_DIMENSIONS", settings.remote_embed_dimensions),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"PREPSHELF_EMBEDDER=remote needs {' and '.join(missing)}")


def build_embedder(settings: Settings) -> Embedder:
    model_dir = _model_dir(settings)
    if settings.embedder == "local" and settings.local_backend == "fake":
        info = read_model_info(model_dir, settings.model_id)
        return FakeEmbedder(
            model_dir,
            dimensions=info.dimensions,
            max_input_tokens=info.max_chunk_tokens,
            model_id=info.model_id,
        )
    if settings.embedder == "local" and settings.local_backend in ("onnx", "onnx-int8"):
        from prepshelf.pipeline.embed_onnx import OnnxEmbedder

        return OnnxEmbedder(
            model_dir,
            cache_dir=settings.data_dir / "models",
            variant=settings.local_backend,
            batch_size=settings.embed_batch_size,
            threads=settings.torch_threads,
        )
    if settings.embedder == "local":
        return LocalEmbedder(
            model_dir, batch_size=settings.embed_batch_size, threads=settings.torch_threads
        )
    from prepshelf.pipeline.embed_remote import RemoteEmbedder

    _check_remote(settings)
    assert settings.remote_embed_url and settings.remote_embed_dimensions
    key = settings.remote_embed_api_key
    return RemoteEmbedder(
        base_url=settings.remote_embed_url,
        model=settings.remote_embed_model,
        dimensions=settings.remote_embed_dimensions,
        max_input_tokens=settings.remote_embed_max_input_tokens,
        api_key=key.get_secret_value() if key else None,
        batch_size=settings.remote_embed_batch_size,
        concurrency=settings.remote_embed_concurrency,
        timeout_s=settings.remote_embed_timeout_s,
        retries=settings.remote_embed_retries,
        backoff_base_s=settings.remote_embed_backoff_base_s,
        backoff_max_s=settings.remote_embed_backoff_max_s,
        count_tokens=lambda texts: _count_tokens(model_dir, texts),
    )


def query_embedder_factory(settings: Settings) -> Callable[[], Embedder] | None:
    """How the front desk builds its query model: None = the torch model on one thread (the
    QueryEmbedder's own); otherwise the worker's embedder, so that the API never loads torch
    when the workers run onnxruntime, a fake or a remote vendor."""
    if settings.embedder == "local" and settings.local_backend == "torch":
        return None
    one_thread = settings.model_copy(update={"torch_threads": 1})

    def build() -> Embedder:
        embedder = build_embedder(one_thread)
        if settings.embedder == "local":
            embedder.embed(["warm-up"])  # one-time costs before the first search, not in it
        return embedder

    return build


def embedder_model_info(settings: Settings) -> ModelInfo:
    """What the front desk records on vector stores, without loading a model or calling out."""
    if settings.embedder == "local":
        return read_model_info(_model_dir(settings), settings.model_id)
    _check_remote(settings)
    assert settings.remote_embed_dimensions
    return ModelInfo(
        model_id=settings.remote_embed_model,
        dimensions=settings.remote_embed_dimensions,
        # ModelInfo counts [CLS]/[SEP] in a window; a remote window has none.
        max_seq_length=settings.remote_embed_max_input_tokens + SPECIAL_TOKENS,
    )
