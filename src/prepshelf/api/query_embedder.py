"""The front desk's one use of the model: embedding search queries and /v1/embeddings inputs.

Nothing heavy is imported when the API starts: the model loads on its own thread right after
the server starts listening (`start_loading`, from `warmup.py`), so no request waits on
start-up and the first search is as fast as the tenth. A request that arrives while the model
is still loading waits for it (it never fails for that); `/readyz` shows where the load is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from prepshelf.pipeline.embed import Embedder

log = logging.getLogger(__name__)

LoadStatus = Literal["not_loaded", "loading", "ready", "failed"]


class QueryEmbedder:
    """All model calls run on one thread of their own, the load and its warm-up included:
    per-thread first-call costs of the model's kernels are paid once, at start-up, and
    requests take turns by model batch (a long /v1/embeddings request lets searches in
    between its batches) instead of competing for the API's cores."""

    def __init__(
        self,
        model_dir: Path,
        threads: int | None = None,
        factory: Callable[[], Embedder] | None = None,
        *,
        model_id: str = "",
    ) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._factory = factory  # e.g. the remote embedder; None = the local model
        self._model_id = model_id
        self._embedder: Embedder | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-model")
        self._status: LoadStatus = "not_loaded"
        self._error: str | None = None
        self._load_s: float | None = None

    def _get(self) -> Embedder:
        """The model, loaded on first use (only ever called on the model thread)."""
        if self._embedder is None:
            started = time.monotonic()
            self._status = "loading"
            try:
                self._embedder = self._build()
            except Exception as exc:
                self._status, self._error = "failed", f"{type(exc).__name__}: {exc}"
                raise
            self._load_s = round(time.monotonic() - started, 2)
            self._status, self._error = "ready", None
        return self._embedder

    def _build(self) -> Embedder:
        if self._factory is not None:
            return self._factory()
        from prepshelf.pipeline.embed import LocalEmbedder

        embedder = LocalEmbedder(self._model_dir, threads=self._threads)
        embedder.embed(["warm-up"])  # the first call pays one-time costs; not a user's search
        return embedder

    def start_loading(self) -> Future[None]:
        """Load the model now, on the model thread (the lifespan calls this at start-up);
        calls that arrive meanwhile queue behind the load and wait for it."""
        self._status = "loading"

        def load() -> None:
            try:
                self._get()
                log.info("query model %s loaded in %.1f s", self._model_id, self._load_s or 0)
            except Exception:
                log.exception("loading the query model failed; the next request tries again")

        return self._executor.submit(load)

    def status(self) -> dict[str, Any]:
        """For /readyz: whether the model is loaded (read without waiting for the load)."""
        body: dict[str, Any] = {"model": self._model_id, "status": self._status}
        if self._load_s is not None:
            body["load_s"] = self._load_s
        if self._error:
            body["error"] = self._error
        return body

    def _call(self, texts: list[str]) -> np.ndarray:
        return self._get().embed(texts)

    def embed_blocking(self, texts: list[str]) -> np.ndarray:
        """Embed from a worker thread (never the event loop, never the model thread)."""
        return self._executor.submit(self._call, texts).result()

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.wrap_future(self._executor.submit(self._call, texts))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
