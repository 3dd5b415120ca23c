"""What the front desk needs to know about the embedding model, read from its config files.

No torch import: the API validates chunking parameters and ids without loading the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# [CLS] and [SEP] take two places of a local model's window; a chunk gets the rest.
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    dimensions: int
    max_seq_length: int

    @property
    def max_chunk_tokens(self) -> int:
        return self.max_seq_length - SPECIAL_TOKENS

    @property
    def auto_overlap_tokens(self) -> int:
        return max(0, self.max_chunk_tokens // 8)


@lru_cache(maxsize=8)
def read_model_info(model_dir: Path, model_id: str) -> ModelInfo:
    st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    return ModelInfo(
        model_id=model_id,
        dimensions=int(pooling["word_embedding_dimension"]),
        max_seq_length=int(st_config["max_seq_length"]),
    )
