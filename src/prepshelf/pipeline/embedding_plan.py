"""What the model embeds for each /v1/embeddings input, and how its vectors come back together.

An input within the model's window is one piece. A longer one follows the `long_input` policy:

- `split` (default): cut into window-sized pieces at word starts, embed each, and return the
  token-weighted mean of the pieces' vectors, re-normalised to unit length (what OpenAI's
  cookbook does for texts over its window; LangChain does the same on its side). Clients
  sized for OpenAI's 8,191-token window send such inputs all the time.
- `truncate`: embed the first window only (the usage counts only those tokens).
- `error`: refuse with `context_length_exceeded`.

Pieces go to the model a batch at a time and a long input's vectors are folded into a running
sum, so no more than one model batch of piece vectors is held beyond the answer itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Literal

import numpy as np
import tokenizers

from prepshelf.errors import InvalidRequestError

if TYPE_CHECKING:
    from prepshelf.pipeline.embedding_request import EmbeddingRequest

LongInput = Literal["split", "truncate", "error"]
LONG_INPUT_POLICIES: tuple[LongInput, ...] = ("split", "truncate", "error")


class ContextLengthError(InvalidRequestError):
    """An input is longer than the model's window (with PREPSHELF_EMBEDDINGS_LONG_INPUT=error)."""

    code = "context_length_exceeded"


@dataclass(frozen=True)
class InputPlan:
    """The texts the model embeds for one input, with their token counts (the weights)."""

    pieces: tuple[str, ...]
    weights: tuple[int, ...]

    @property
    def tokens(self) -> int:
        return sum(self.weights)


def windows(word_ids: Sequence[int | None], window: int) -> list[tuple[int, int]]:
    """[start, end) token spans of at most `window` tokens, cut where a word starts.

    Cutting between two word-pieces of one word would make the next piece start mid-word and
    tokenize differently; a single word longer than the window is cut where it must.
    """
    n = len(word_ids)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = min(start + window, n)
        if end < n:
            cut = end
            while cut > start and word_ids[cut] is not None and word_ids[cut] == word_ids[cut - 1]:
                cut -= 1
            end = cut if cut > start else end
        spans.append((start, end))
        start = end
    return spans


def plan_input(
    text: str, encoding: tokenizers.Encoding, *, window: int, policy: LongInput, index: int
) -> InputPlan:
    """One input's pieces under `policy`; `encoding` is the model's tokenization of `text`."""
    n = len(encoding.ids)
    if n <= window:
        return InputPlan((text,), (n,))
    if policy == "error":
        raise ContextLengthError(
            f"This model's maximum context length is {window} tokens, however input[{index}] "
            f"has {n} tokens. Shorten the input, or let the server split long inputs "
            "(PREPSHELF_EMBEDDINGS_LONG_INPUT=split).",
            param="input",
        )
    spans = windows(encoding.word_ids, window)
    if policy == "truncate":
        spans = spans[:1]
    offsets = encoding.offsets
    pieces = tuple(text[offsets[start][0] : offsets[end - 1][1]] for start, end in spans)
    return InputPlan(pieces, tuple(end - start for start, end in spans))


def iter_input_vectors(
    requests: Sequence[EmbeddingRequest],
    embed: Callable[[list[str]], np.ndarray],
    *,
    batch_size: int,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(request number, input index, unit vector) for every input of `requests`, in order.

    `embed` sees at most `batch_size` pieces per call, pieces of several inputs (and requests)
    together, so short inputs still fill the model's batches.
    """
    pieces = (
        (r, i, k == len(plan.pieces) - 1, len(plan.pieces) == 1, text, weight)
        for r, request in enumerate(requests)
        for i, plan in enumerate(request.inputs)
        for k, (text, weight) in enumerate(zip(plan.pieces, plan.weights, strict=True))
    )
    total: np.ndarray | None = None
    while batch := list(islice(pieces, max(1, batch_size))):
        vectors = embed([p[4] for p in batch])
        for (r, i, last, single, _text, weight), vector in zip(batch, vectors, strict=True):
            if single:
                yield r, i, vector
                continue
            part = np.asarray(vector, dtype=np.float64) * weight
            total = part if total is None else total + part
            if last:
                norm = float(np.linalg.norm(total))
                yield r, i, (total / (norm or 1.0)).astype(np.float32)
                total = None
