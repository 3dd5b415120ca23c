"""Retrieval metrics against numbers worked out by hand, and the run-to-run diff."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from prepshelf.domain.evals import OutputItem, Question
from prepshelf.pipeline.eval_diff import diff_items, metric_deltas
from prepshelf.pipeline.eval_metrics import (
    percentile,
    rank_files,
    score_question,
    summarize,
)

T, F = True, False


def test_one_question_by_hand() -> None:
    first = score_question([T, F, F], relevant_in_store=1)
    assert (first.rank, first.hit_at_1, first.hit_at_3, first.hit_at_10) == (1, 1, 1, 1)
    assert first.reciprocal_rank == 1 and first.ndcg_at_10 == pytest.approx(1.0)

    third = score_question([F, F, T, F], relevant_in_store=1)
    assert (third.rank, third.hit_at_1, third.hit_at_3, third.hit_at_10) == (3, 0, 1, 1)
    assert third.reciprocal_rank == pytest.approx(1 / 3)
    assert third.ndcg_at_10 == pytest.approx(0.5)  # 1/log2(4) over an ideal of 1

    # Two right answers in the store, found at ranks 2 and 4.
    two = score_question([F, T, F, T], relevant_in_store=2)
    assert two.rank == 2 and two.reciprocal_rank == pytest.approx(0.5)
    assert two.ndcg_at_10 == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    )


def test_beyond_ten_files_and_nothing_in_store_score_zero() -> None:
    late = score_question([F] * 10 + [T], relevant_in_store=1)
    assert late.rank is None and late.hit_at_10 == 0 and late.ndcg_at_10 == 0
    absent = score_question([F, F], relevant_in_store=0)
    assert absent.rank is None and absent.ndcg_at_10 == 0
    # More right answers found than the store held at the start (it changed meanwhile):
    # the ideal grows with them, so nDCG stays at most 1.
    assert score_question([T, T], relevant_in_store=1).ndcg_at_10 == pytest.approx(1.0)


def test_run_means_by_hand() -> None:
    scores = [
        score_question([T, F, F], 1),  # rank 1
        score_question([F, F, T, F], 1),  # rank 3
        score_question([F, T, F, T], 2),  # rank 2
        score_question([F] * 10, 1),  # not found
        None,  # the search failed
    ]
    summary = summarize("vector", scores, pass_k=2, latencies_ms=[10, 40, 20, 30])
    assert summary.hit_at_1 == pytest.approx(1 / 5)
    assert summary.hit_at_3 == pytest.approx(3 / 5)
    assert summary.hit_at_10 == pytest.approx(3 / 5)
    assert summary.mrr == pytest.approx((1 + 1 / 3 + 1 / 2) / 5)
    ndcg_third = 1 / math.log2(4)
    ndcg_two = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert summary.ndcg_at_10 == pytest.approx((1 + ndcg_third + ndcg_two) / 5)
    assert (summary.passed, summary.failed, summary.errored) == (2, 2, 1)  # ranks 1, 2 pass
    assert (summary.latency_ms.p50, summary.latency_ms.p90, summary.latency_ms.p99) == (20, 40, 40)
    assert summary.latency_ms.mean == pytest.approx(25)
    as_json = summary.to_json()
    assert as_json["testing_criteria"] == "vector"
    assert as_json["metrics"]["hit_at_3"] == pytest.approx(0.6)


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 90) == 90
    assert percentile(values, 99) == 99 and percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_ranks_count_distinct_files_at_their_best_chunk() -> None:
    hits = [
        {"file_id": "a", "filename": "a.md", "score": 0.9, "text": "x"},
        {"file_id": "a", "filename": "a.md", "score": 0.8, "text": "y"},
        {"file_id": "b", "filename": "b.md", "score": 0.7, "text": "z"},
    ]
    ranked = rank_files(hits)
    assert [f.file_id for f in ranked] == ["a", "b"] and ranked[0].text == "x"
    assert len(rank_files([{**hits[0], "file_id": str(i)} for i in range(30)])) == 10


def test_right_answers_by_filename_or_attributes() -> None:
    q = Question(
        0,
        "q",
        expected_filenames=("a.md",),
        expected_attributes=({"source": "docs/b.md", "rev": 2},),
    )
    assert q.is_relevant("a.md", {})
    assert q.is_relevant("other.md", {"source": "a.md"})  # a synced file's path
    assert not q.is_relevant("other.md", {"source": 1})
    assert q.is_relevant("other", {"source": "docs/b.md", "rev": 2.0, "extra": 1})
    assert not q.is_relevant("other", {"source": "docs/b.md"})  # every key must hold
    assert not q.is_relevant("other", {"source": "docs/b.md", "rev": "2"})
    flag = Question(1, "q", expected_attributes=({"draft": True},))
    assert flag.is_relevant(None, {"draft": True}) and not flag.is_relevant(None, {"draft": 1})


def _item(no: int, rank: int | None, top: str, error: bool = False) -> OutputItem:
    result: dict[str, object] = {"name": "vector", "rank": rank}
    if error:
        result = {"name": "vector", "error": {"message": "boom"}}
    else:
        result["sample"] = {"hits": [{"filename": top}]}
    return OutputItem(
        id=f"i{no}",
        run_id="r",
        eval_id="e",
        item_no=no,
        status="pass",
        question={"question": f"question {no}"},
        results=[result],
        created_at=datetime.now(UTC),
    )


def test_diff_puts_the_biggest_drop_first() -> None:
    base = [_item(0, 1, "a"), _item(1, 1, "b"), _item(2, 5, "c"), _item(3, 2, "d")]
    run = [_item(0, 2, "x"), _item(1, None, "y"), _item(2, 1, "c"), _item(3, 2, "d", error=True)]
    rows = diff_items(base, run)
    assert [(r.item_no, r.change) for r in rows] == [
        (1, "worse"),  # 1 → not found (11): the biggest drop
        (3, "worse"),  # an error counts as not found
        (0, "worse"),
        (2, "better"),
    ]
    assert rows[0].base_top == "b" and rows[0].top == "y" and rows[1].error == "boom"


def test_metric_deltas() -> None:
    base = [
        {
            "testing_criteria": "v",
            "metrics": dict.fromkeys(
                ("hit_at_1", "hit_at_3", "hit_at_10", "mrr", "ndcg_at_10"), 0.5
            ),
        }
    ]
    run = [
        {
            "testing_criteria": "v",
            "metrics": dict.fromkeys(
                ("hit_at_1", "hit_at_3", "hit_at_10", "mrr", "ndcg_at_10"), 0.25
            ),
        }
    ]
    (row,) = metric_deltas(base, run)
    assert row["metrics"]["mrr"] == {"base": 0.5, "run": 0.25, "delta": -0.25}
