"""cl100k_base token ids, long inputs (split / truncate / error) and model batching of
/v1/embeddings requests: the pure parts, with the real tokenizers and a counting fake model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tokenizers

from prepshelf.errors import InvalidRequestError
from prepshelf.pipeline import cl100k
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.embedding_plan import ContextLengthError, iter_input_vectors, windows
from prepshelf.pipeline.embedding_request import EmbeddingLimits, parse_request
from prepshelf.pipeline.tokenizer import load_tokenizer

WINDOW = 254
LIMITS = EmbeddingLimits(
    model_ids=frozenset({"m"}),
    dimensions=4,
    max_input_tokens=WINDOW,
    max_inputs=2048,
    max_total_tokens=300_000,
)
PARAGRAPH = (
    "Parental leave lets employees take paid time off after the birth or adoption of a child. "
    "Unbelievably, the embeddings of überlange Dokumente (naïve résumés, 北京大学 notes) "
    "still have to represent every part of them, not only the first few hundred tokens. "
)


@pytest.fixture(scope="module")
def tok() -> tokenizers.Tokenizer:
    return load_tokenizer(default_model_dir())


def test_cl100k_ids_are_openais() -> None:
    enc = cl100k.encoding()
    assert enc is cl100k.encoding()  # loaded once per process
    assert enc.encode("hello world") == [15339, 1917]  # as tiktoken's cl100k_base
    text = "Ünïcödé — 北京 😀 tabs\tand\nnew lines"
    assert cl100k.decode(enc.encode(text), index=0) == text


@pytest.mark.parametrize("bad", [[100261], [100277], [-1], [15339, 10**12]])
def test_ids_cl100k_does_not_define_are_a_clear_400(bad: list[int]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        cl100k.decode(bad, index=3)
    assert info.value.status_code == 400 and info.value.param == "input"
    assert "input[3]" in info.value.message and "cl100k_base" in info.value.message


def test_a_split_multibyte_character_decodes_to_a_replacement() -> None:
    ids = cl100k.encoding().encode("😀")
    assert len(ids) > 1  # one character, several byte-level tokens
    assert "\ufffd" in cl100k.decode(ids[:1], index=0)


def test_cl100k_arrays_become_the_text_they_encode(tok: tokenizers.Tokenizer) -> None:
    """What LangChain sends by default: the same text, re-tokenized for the model."""
    texts = ["hello world", "parental leave"]
    ids = [cl100k.encoding().encode(t) for t in texts]
    req = parse_request({"model": "m", "input": ids}, limits=LIMITS, tokenizer=tok)
    assert req.texts == texts
    assert req.request_tokens == sum(len(i) for i in ids)  # counted as sent
    model_tokens = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
    assert req.prompt_tokens == model_tokens  # usage: what the model embedded
    single = parse_request({"model": "m", "input": ids[0]}, limits=LIMITS, tokenizer=tok)
    assert single.texts == ["hello world"]


def test_pieces_fit_the_window_cover_the_text_and_retokenize_alike(
    tok: tokenizers.Tokenizer,
) -> None:
    text = PARAGRAPH * 12
    n = len(tok.encode(text, add_special_tokens=False).ids)
    assert n > 3 * WINDOW
    req = parse_request({"model": "m", "input": text}, limits=LIMITS, tokenizer=tok)
    (plan,) = req.inputs
    assert len(plan.pieces) >= 4 and sum(plan.weights) == n == req.prompt_tokens
    for piece, weight in zip(plan.pieces, plan.weights, strict=True):
        assert 0 < weight <= WINDOW
        # Cut at word starts: each piece tokenizes to exactly the tokens it was cut from.
        assert len(tok.encode(piece, add_special_tokens=False).ids) == weight
    joined = " ".join(plan.pieces)
    assert joined.split() == text.split()  # nothing lost, nothing repeated


def test_windows_back_off_to_word_starts_but_cut_a_word_too_long() -> None:
    words = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3]
    assert windows(words, 4) == [(0, 3), (3, 5), (5, 9), (9, 13), (13, 15)]
    assert windows(words, 100) == [(0, 15)]
    assert windows([None, None, None], 2) == [(0, 2), (2, 3)]


def test_truncate_and_error_policies(tok: tokenizers.Tokenizer) -> None:
    text = PARAGRAPH * 6
    truncate = EmbeddingLimits(**{**LIMITS.__dict__, "long_input": "truncate"})
    req = parse_request({"model": "m", "input": [text, "short"]}, limits=truncate, tokenizer=tok)
    assert len(req.inputs[0].pieces) == 1 and 0 < req.inputs[0].tokens <= WINDOW
    assert req.prompt_tokens == req.inputs[0].tokens + 1  # usage counts what was embedded
    assert text.startswith(req.inputs[0].pieces[0])
    error = EmbeddingLimits(**{**LIMITS.__dict__, "long_input": "error"})
    with pytest.raises(ContextLengthError) as info:
        parse_request({"model": "m", "input": ["ok", text]}, limits=error, tokenizer=tok)
    assert info.value.code == "context_length_exceeded" and "input[1]" in info.value.message


class CountingModel:
    """A fake model: a fixed random unit vector per text; records each call's size."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def vector(self, text: str) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(text)) % 2**32)
        v = rng.standard_normal(4)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.stack([self.vector(t) for t in texts])


def test_batches_hold_at_most_batch_size_pieces_and_fold_long_inputs(
    tok: tokenizers.Tokenizer,
) -> None:
    long_text = PARAGRAPH * 8
    first = parse_request(
        {"model": "m", "input": ["a short one", long_text, "another"]}, limits=LIMITS, tokenizer=tok
    )
    second = parse_request({"model": "m", "input": long_text}, limits=LIMITS, tokenizer=tok)
    model = CountingModel()
    out: Iterator[tuple[int, int, np.ndarray]] = iter_input_vectors(
        [first, second], model.embed, batch_size=2
    )
    got = list(out)
    assert [(r, i) for r, i, _ in got] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    pieces = len(first.texts) + len(second.texts)
    assert max(model.calls) <= 2 and sum(model.calls) == pieces
    # A long input: the token-weighted mean of its pieces, re-normalised.
    plan = first.inputs[1]
    weights = np.asarray(plan.weights, dtype=np.float64)
    mean = (np.stack([model.vector(p) for p in plan.pieces]) * weights[:, None]).sum(axis=0)
    np.testing.assert_allclose(got[1][2], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(got[3][2], got[1][2], atol=1e-6)  # same text, same vector
    # A short input is the model's vector unchanged.
    np.testing.assert_array_equal(got[0][2], model.vector("a short one"))
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for _, _, v in got)
