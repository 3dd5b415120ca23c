"""Token-window chunking with the embedding model's own tokenizer.

The text is tokenized once; windows are cut on token boundaries and mapped back to the original
text through the token offsets, so a chunk is an exact slice of the input. Windows end on whole
words (re-tokenising whole words gives the same tokens, so a chunk never grows past the window
when the embedder tokenizes it again) and, where one is near, on a paragraph or sentence end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tokenizers

from prepshelf.errors import InvalidRequestError

# OpenAI's lower bound for static chunking.
MIN_CHUNK_TOKENS = 100
# A window may end early at a sentence or paragraph end found in its last 15%.
_BOUNDARY_ZONE = 0.15

_MAX_PARAM = "chunking_strategy.static.max_chunk_size_tokens"
_OVERLAP_PARAM = "chunking_strategy.static.chunk_overlap_tokens"


@dataclass(frozen=True)
class ChunkingStrategy:
    max_tokens: int
    overlap_tokens: int


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    token_count: int
    char_start: int  # text == original[char_start:char_end]
    char_end: int


def validate_strategy(
    max_tokens: int,
    overlap_tokens: int,
    window: int,
    model_name: str = "all-MiniLM-L6-v2",
) -> None:
    """Reject a static strategy the model cannot embed whole, or that OpenAI would refuse."""
    if max_tokens > window:
        raise InvalidRequestError(
            f"max_chunk_size_tokens {max_tokens} exceeds the embedding model's window: "
            f"{model_name} accepts at most {window} tokens per chunk",
            param=_MAX_PARAM,
        )
    if max_tokens < MIN_CHUNK_TOKENS:
        raise InvalidRequestError(
            f"max_chunk_size_tokens {max_tokens} is below the minimum of {MIN_CHUNK_TOKENS}",
            param=_MAX_PARAM,
        )
    if overlap_tokens < 0:
        raise InvalidRequestError(
            f"chunk_overlap_tokens {overlap_tokens} must not be negative", param=_OVERLAP_PARAM
        )
    if overlap_tokens * 2 > max_tokens:
        raise InvalidRequestError(
            f"chunk_overlap_tokens {overlap_tokens} must not exceed half of "
            f"max_chunk_size_tokens ({max_tokens})",
            param=_OVERLAP_PARAM,
        )


def chunk_text(
    text: str, tokenizer: tokenizers.Tokenizer, strategy: ChunkingStrategy
) -> list[Chunk]:
    """Split `text` into overlapping windows of at most `strategy.max_tokens` tokens.

    Every token lies in at least one chunk; chunks come in text order and none is empty.
    """
    max_tokens, overlap = strategy.max_tokens, strategy.overlap_tokens
    if max_tokens < 1 or overlap < 0 or overlap >= max_tokens:
        raise ValueError(f"bad chunking strategy {strategy}")
    enc = tokenizer.encode(text, add_special_tokens=False)
    offsets: list[tuple[int, int]] = enc.offsets
    words: list[int | None] = enc.word_ids
    n = len(offsets)
    if n == 0:
        return []

    chunks: list[Chunk] = []
    start = 0
    while True:
        end = min(start + max_tokens, n)
        if end < n:
            end = _pick_end(text, offsets, words, start, end)
        count = end - start
        if _mid_word(words, start) or (end < n and _mid_word(words, end)):
            # A word longer than the window was cut; its pieces may re-tokenise into more
            # tokens, so measure and shrink. Whole words re-tokenise to the same tokens.
            end, count = _fit(text, tokenizer, offsets, start, end, max_tokens)
        char_start, char_end = offsets[start][0], offsets[end - 1][1]
        chunks.append(Chunk(len(chunks), text[char_start:char_end], count, char_start, char_end))
        if end >= n:
            return chunks
        # Overlap is measured from where the window really ended, so an early end never leaves
        # a gap; always advance by at least one token.
        nxt = max(end - overlap, start + 1)
        word_start = _word_start(words, nxt)
        if word_start > start:
            nxt = word_start
        start = nxt


def _pick_end(
    text: str,
    offsets: Sequence[tuple[int, int]],
    words: Sequence[int | None],
    start: int,
    end: int,
) -> int:
    """Move a window end (exclusive token index < len) back to a paragraph, sentence or word end."""
    best, best_rank = end, 0
    zone_start = max(start + 1, end - int((end - start) * _BOUNDARY_ZONE))
    for k in range(zone_start, end + 1):
        gap = text[offsets[k - 1][1] : offsets[k][0]]
        if not gap:
            continue
        if "\n\n" in gap:
            rank = 3
        elif text[offsets[k - 1][1] - 1] in ".!?":
            rank = 2
        elif "\n" in gap:
            rank = 1
        else:
            continue
        if rank >= best_rank:  # the latest of the best kind keeps windows full
            best, best_rank = k, rank
    if best_rank:
        return best
    boundary = _word_start(words, end)
    return boundary if boundary > start else end


def _word_start(words: Sequence[int | None], k: int) -> int:
    """The first token of the word that token `k` belongs to."""
    word = words[k]
    while k > 0 and word is not None and words[k - 1] == word:
        k -= 1
    return k


def _mid_word(words: Sequence[int | None], k: int) -> bool:
    """Whether token `k` continues the word of token `k - 1`."""
    return k > 0 and words[k] is not None and words[k] == words[k - 1]


def _fit(
    text: str,
    tokenizer: tokenizers.Tokenizer,
    offsets: Sequence[tuple[int, int]],
    start: int,
    end: int,
    max_tokens: int,
) -> tuple[int, int]:
    """The largest end (and its re-tokenised count) whose slice fits in `max_tokens`."""
    while True:
        chunk = text[offsets[start][0] : offsets[end - 1][1]]
        count = len(tokenizer.encode(chunk, add_special_tokens=False).ids)
        if count <= max_tokens or end - start == 1:
            return end, count
        end -= 1
