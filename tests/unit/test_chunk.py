"""Token-window chunking over the packaged all-MiniLM-L6-v2 tokenizer."""

from __future__ import annotations

import itertools
import unicodedata
from pathlib import Path

import pytest
import tokenizers

from prepshelf.errors import InvalidRequestError
from prepshelf.pipeline.chunk import Chunk, ChunkingStrategy, chunk_text, validate_strategy
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.tokenizer import load_tokenizer

SPEC = Path("/work/shared/corpus/dev/commonmark-spec.md")
DEFAULT = ChunkingStrategy(max_tokens=254, overlap_tokens=32)

PROSE = (
    "Retrieval systems split documents into chunks before embedding them. "
    "Each chunk must fit the model's window, or the model silently truncates it. "
    "Overlap between neighbouring chunks keeps a sentence that straddles a boundary findable.\n\n"
    "Tokenization uses WordPiece, so uncommon words such as antidisestablishmentarianism "
    "or pneumonoultramicroscopicsilicovolcanoconiosis break into several pieces. "
)


@pytest.fixture(scope="module")
def tok() -> tokenizers.Tokenizer:
    return load_tokenizer(default_model_dir())


def ids(tok: tokenizers.Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def check_invariants(
    text: str, tok: tokenizers.Tokenizer, strategy: ChunkingStrategy, chunks: list[Chunk]
) -> None:
    offsets = tok.encode(text, add_special_tokens=False).offsets
    assert [c.index for c in chunks] == list(range(len(chunks)))
    covered_to = 0  # every token's start lies inside some chunk, in order
    prev_start = -1
    for c in chunks:
        assert c.text and c.text.strip()
        assert text[c.char_start : c.char_end] == c.text
        assert c.char_start > prev_start
        prev_start = c.char_start
        assert c.token_count == len(ids(tok, c.text)) <= strategy.max_tokens
    spans = [(c.char_start, c.char_end) for c in chunks]
    i = 0
    for start, end in offsets:
        while i < len(spans) and spans[i][1] < end:
            i += 1
        assert i < len(spans), f"token at {start} is in no chunk"
        assert spans[i][0] <= start, f"token at {start} is in no chunk"
        covered_to = end
    assert covered_to == chunks[-1].char_end


def test_load_tokenizer_has_no_truncation_and_is_cached(tok: tokenizers.Tokenizer) -> None:
    assert tok.truncation is None and tok.padding is None
    assert load_tokenizer(default_model_dir()) is tok
    assert len(ids(tok, "word " * 1000)) == 1000


def test_short_text_is_one_chunk_equal_to_stripped_text(tok: tokenizers.Tokenizer) -> None:
    text = "\n   Hello, world. A short note.  \n"
    chunks = chunk_text(text, tok, DEFAULT)
    assert len(chunks) == 1
    assert chunks[0].text == text.strip()
    assert chunks[0].token_count == len(ids(tok, text))


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_blank_text_gives_no_chunks(tok: tokenizers.Tokenizer, text: str) -> None:
    assert chunk_text(text, tok, DEFAULT) == []


def test_windows_and_overlap(tok: tokenizers.Tokenizer) -> None:
    # One-token words with no sentence ends: windows are exactly max and step max - overlap.
    text = " ".join(f"w{i % 10}" if i % 2 else "apple" for i in range(1000))
    words = text.split()
    assert len(ids(tok, text)) == 1500  # "w3" -> "w", "##3"
    strategy = ChunkingStrategy(max_tokens=100, overlap_tokens=20)
    chunks = chunk_text(text, tok, strategy)
    check_invariants(text, tok, strategy, chunks)
    for a, b in itertools.pairwise(chunks):
        assert 99 <= a.token_count <= 100  # at most one token lost to a word boundary
        overlap = text[b.char_start : a.char_end]
        assert 19 <= len(ids(tok, overlap)) <= 21
    assert len(chunks) == pytest.approx((1500 - 20) / 80, abs=2)
    assert sum(len(c.text.split()) for c in chunks) >= len(words)


def test_no_overlap_tiles_the_text(tok: tokenizers.Tokenizer) -> None:
    text = PROSE * 20
    strategy = ChunkingStrategy(max_tokens=100, overlap_tokens=0)
    chunks = chunk_text(text, tok, strategy)
    check_invariants(text, tok, strategy, chunks)
    assert sum(c.token_count for c in chunks) == len(ids(tok, text))


def test_never_cuts_inside_a_word(tok: tokenizers.Tokenizer) -> None:
    text = PROSE * 30
    strategy = ChunkingStrategy(max_tokens=100, overlap_tokens=10)
    chunks = chunk_text(text, tok, strategy)
    check_invariants(text, tok, strategy, chunks)
    for c in chunks:
        assert c.char_start == 0 or not text[c.char_start - 1].isalnum()
        assert c.char_end == len(text) or not text[c.char_end].isalnum()


def test_prefers_sentence_ends(tok: tokenizers.Tokenizer) -> None:
    text = "The cat sat on a mat today. " * 200  # 8 tokens a sentence
    strategy = ChunkingStrategy(max_tokens=100, overlap_tokens=10)
    chunks = chunk_text(text, tok, strategy)
    check_invariants(text, tok, strategy, chunks)
    assert all(c.text.endswith("today.") for c in chunks)
    assert all(c.token_count >= 85 for c in chunks[:-1])


def test_prefers_paragraph_ends_over_later_sentence_ends(tok: tokenizers.Tokenizer) -> None:
    paragraph = "The cat sat on a mat today. " * 11  # 88 tokens
    text = (paragraph.strip() + "\n\n") * 20
    strategy = ChunkingStrategy(max_tokens=100, overlap_tokens=10)
    chunks = chunk_text(text, tok, strategy)
    check_invariants(text, tok, strategy, chunks)
    assert all(text[c.char_end : c.char_end + 2] == "\n\n" for c in chunks[:-1])


def test_no_sentence_end_near_window_end_keeps_window_full(tok: tokenizers.Tokenizer) -> None:
    text = "One sentence here. " + "word " * 500
    chunks = chunk_text(text, tok, ChunkingStrategy(max_tokens=100, overlap_tokens=10))
    assert [c.token_count for c in chunks[:-1]] == [100] * (len(chunks) - 1)


def test_word_longer_than_window_is_cut(tok: tokenizers.Tokenizer) -> None:
    text = "start " + "abc" * 30 + " end " + "x" * 150 + " tail"  # 30+ pieces; a 150-char [UNK]
    strategy = ChunkingStrategy(max_tokens=10, overlap_tokens=2)
    chunks = chunk_text(text, tok, strategy)
    check_invariants(text, tok, strategy, chunks)


def test_unicode_cjk_and_emoji(tok: tokenizers.Tokenizer) -> None:
    text = (
        "Ünïcödé façade naïve café. 日本語のテキストは単語の間に空白がありません。"
        "Emoji 😀🎉 and Ελληνικά κείμενα, русский текст. zero\u200bwidth ctrl\x00char "
    ) * 40
    strategy = ChunkingStrategy(max_tokens=100, overlap_tokens=16)
    for variant in (text, unicodedata.normalize("NFD", text)):  # combining accents too
        chunks = chunk_text(variant, tok, strategy)
        assert len(chunks) > 5
        check_invariants(variant, tok, strategy, chunks)


def test_commonmark_spec(tok: tokenizers.Tokenizer) -> None:
    if not SPEC.exists():
        pytest.skip("dev corpus not present")
    text = SPEC.read_text(encoding="utf-8")
    for strategy in (DEFAULT, ChunkingStrategy(max_tokens=100, overlap_tokens=50)):
        chunks = chunk_text(text, tok, strategy)
        check_invariants(text, tok, strategy, chunks)
    assert len(chunk_text(text, tok, ChunkingStrategy(254, 0))) < len(chunks)


def test_one_megabyte_chunks_whole(tok: tokenizers.Tokenizer) -> None:
    # Speed is measured in bench/, not asserted here; this checks the result on a big input.
    text = (PROSE * (1_000_000 // len(PROSE) + 1))[:1_000_000]
    chunks = chunk_text(text, tok, DEFAULT)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(text.rstrip())
    assert all(c.token_count <= 254 for c in chunks)
    assert all(a.char_start < b.char_start < a.char_end for a, b in itertools.pairwise(chunks))


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "param", "fragment"),
    [
        (800, 400, "chunking_strategy.static.max_chunk_size_tokens", "accepts at most 254"),
        (99, 0, "chunking_strategy.static.max_chunk_size_tokens", "minimum of 100"),
        (200, -1, "chunking_strategy.static.chunk_overlap_tokens", "negative"),
        (200, 101, "chunking_strategy.static.chunk_overlap_tokens", "half"),
    ],
)
def test_validate_strategy_rejects(
    max_tokens: int, overlap: int, param: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_strategy(max_tokens, overlap, 254, "all-MiniLM-L6-v2")
    assert info.value.param == param
    assert fragment in info.value.message


def test_validate_strategy_names_the_model() -> None:
    with pytest.raises(InvalidRequestError, match=r"max_chunk_size_tokens 800 exceeds.*all-MiniLM"):
        validate_strategy(800, 400, 254, "all-MiniLM-L6-v2")


@pytest.mark.parametrize(("max_tokens", "overlap"), [(254, 32), (100, 50), (254, 127), (100, 0)])
def test_validate_strategy_accepts(max_tokens: int, overlap: int) -> None:
    validate_strategy(max_tokens, overlap, 254)
