"""The local model on onnxruntime (PREPSHELF_LOCAL_BACKEND=onnx | onnx-int8), without torch.

The graph (exported once by embed_onnx_export.py into <data_dir>/models/) contains the whole
sentence-transformers pipeline, normalisation included; this module only tokenises with the
model's own tokenizer.json (same ids as sentence-transformers, truncated at the model's window),
pads each batch and runs the session. onnxruntime is imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tokenizers

from prepshelf.pipeline.embed import LocalEmbedder
from prepshelf.pipeline.embed_onnx_export import OnnxVariant, ensure_exported
from prepshelf.pipeline.model_info import SPECIAL_TOKENS

if TYPE_CHECKING:
    import onnxruntime


class OnnxEmbedder(LocalEmbedder):
    """Same model, same vectors (float) or nearly (int8), run by onnxruntime on the CPU.

    A LocalEmbedder subclass so that the worker treats it as the local model (warm-up at start,
    one model call at a time).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        cache_dir: Path,
        variant: OnnxVariant = "onnx",
        batch_size: int = 32,
        threads: int | None = None,
        model_id: str | None = None,
        sort_by_length: bool = True,
    ) -> None:
        super().__init__(model_dir, batch_size=batch_size, threads=threads, model_id=model_id)
        self.variant: OnnxVariant = variant
        self.cache_dir = Path(cache_dir)
        self.sort_by_length = sort_by_length
        # Float vectors equal torch's (cosine 1.000000), int8 ones differ slightly: only int8
        # keeps its own embedding-cache entries, so vectors of one kind never mix in a store.
        self.cache_suffix = "" if variant == "onnx" else f"+{variant}"
        self.onnx_path: Path | None = None
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._input_names: list[str] = []
        self._pad_id = 0

    def _load_session(self) -> tuple[onnxruntime.InferenceSession, tokenizers.Tokenizer]:
        if self._session is not None and self._tokenizer is not None:
            return self._session, self._tokenizer
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                path = ensure_exported(
                    self.model_dir,
                    self.cache_dir,
                    self.model_id,
                    self.variant,
                    threads=self.threads,
                )
                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads or 0  # 0 = one per physical core
                options.inter_op_num_threads = 1
                # Idle pool threads sleep instead of spinning: a worker's parse processes and
                # database writes run between model calls and need those cores.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
                self._input_names = [i.name for i in session.get_inputs()]
                # A private tokenizer: the shared one (load_tokenizer) must not be reconfigured.
                tokenizer = tokenizers.Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                self._pad_id = int((tokenizer.padding or {}).get("pad_id", 0))
                tokenizer.no_padding()  # each batch is padded to its own longest text below
                tokenizer.enable_truncation(max_length=self.max_input_tokens + SPECIAL_TOKENS)
                self.onnx_path, self._tokenizer, self._session = path, tokenizer, session
            assert self._session is not None and self._tokenizer is not None
            return self._session, self._tokenizer

    def load(self) -> None:
        self._load_session()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        session, tokenizer = self._load_session()
        encodings = tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64)
        # Longest first, in batches of similar length: little padding, and the largest batch
        # (the memory peak) comes first. The output keeps the input order.
        order = (
            np.argsort(-lengths, kind="stable") if self.sort_by_length else np.arange(len(texts))
        )
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            feeds = _pad([encodings[i] for i in rows], int(lengths[rows].max()), self._pad_id)
            result = session.run(None, {n: feeds[n] for n in self._input_names})
            out[rows] = result[0]
        return out


def _pad(encodings: Sequence[Any], width: int, pad_id: int) -> dict[str, np.ndarray]:
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    types = np.zeros((len(encodings), width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = 1
        types[row, :n] = enc.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
