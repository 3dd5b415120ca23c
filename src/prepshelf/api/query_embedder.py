"""The front desk's one use of the model: embedding short search queries (and /v1/embeddings).

Loaded lazily on first use, in a thread, so starting the API and every other route stays light.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from prepshelf.pipeline.embed import Embedder


class QueryEmbedder:
    def __init__(
        self,
        model_dir: Path,
        threads: int | None = None,
        factory: Callable[[], Embedder] | None = None,
    ) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._factory = factory  # e.g. the remote embedder; None = the local model
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    def _get(self) -> Embedder:
        with self._lock:
            if self._embedder is None and self._factory is not None:
                self._embedder = self._factory()
            if self._embedder is None:
                from prepshelf.pipeline.embed import LocalEmbedder

                self._embedder = LocalEmbedder(self._model_dir, threads=self._threads)
            return self._embedder

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(lambda: self._get().embed(texts))
