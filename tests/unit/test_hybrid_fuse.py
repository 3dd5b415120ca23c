"""Reciprocal rank fusion: normalised to 0..1, order by fused rank, weights respected."""

from __future__ import annotations

import pytest

from prepshelf.store.hybrid import HybridWeights, fuse, query_words


def _hits(*names: str) -> list[dict[str, object]]:
    return [{"file_id": n, "chunk_index": 0, "text": n} for n in names]


def test_first_in_both_lists_scores_one() -> None:
    fused = fuse(_hits("a", "b"), _hits("a", "c"), HybridWeights(1.0, 1.0))
    assert fused[0]["file_id"] == "a" and fused[0]["score"] == pytest.approx(1.0)
    assert all(0.0 < h["score"] < 1.0 for h in fused[1:])
    assert {h["file_id"] for h in fused} == {"a", "b", "c"}


def test_weights_decide_between_the_lists() -> None:
    assert fuse(_hits("v"), _hits("t"), HybridWeights(3.0, 1.0))[0]["file_id"] == "v"
    assert fuse(_hits("v"), _hits("t"), HybridWeights(1.0, 3.0))[0]["file_id"] == "t"
    # Second in both beats first in one: agreement between the lists counts most.
    vector, text = _hits("v", "x"), _hits("t", "x")
    assert fuse(vector, text, HybridWeights(1.0, 1.0))[0]["file_id"] == "x"


def test_query_words_are_distinct_lowercase_and_bounded() -> None:
    assert query_words("The QX-7731 the, café!") == ["the", "qx", "7731", "café"]
    assert len(query_words(" ".join(f"w{i}" for i in range(500)))) == 64
