"""Loading the embedding model's own tokenizer (Rust `tokenizers`, no torch)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import tokenizers


@lru_cache(maxsize=8)
def load_tokenizer(model_dir: Path) -> tokenizers.Tokenizer:
    """The tokenizer in `model_dir/tokenizer.json`, shared per path.

    Truncation and padding are switched off (the file ships with both set to 128), so a whole
    document tokenizes in one piece. The returned object is shared: callers must not reconfigure it.
    """
    tokenizer = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
