"""Retrieval metrics for one question and for a whole run (pure functions, no I/O).

Ranks count distinct files: search returns chunks, a file's rank is the position of its best
chunk once each file is kept only at its first (best) place. Right answers are judged per
file (`Question.is_relevant`). For each question, with `rank` the rank of the first right
answer among the first 10 files (None when there is none):

- hit@k = 1 when rank <= k (k = 1, 3, 10), else 0;
- reciprocal rank = 1 / rank, or 0 (its mean over the questions is MRR@10);
- nDCG@10 with binary gains: DCG = sum over right answers at rank i <= 10 of 1 / log2(i + 1);
  the ideal DCG puts R right answers first, R = the right answers the store held when the
  run started (at most 10; at least the number found); no right answer in the store -> 0.

A run's figure for a search setting is the mean over its questions; a question whose search
failed counts 0 (and is counted as errored). Latency percentiles are nearest-rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prepshelf.domain.evals import CUTOFFS, DEPTH


@dataclass(frozen=True)
class RankedFile:
    file_id: str
    filename: str | None
    attributes: dict[str, Any]
    score: float
    text: str


def rank_files(hits: Sequence[dict[str, Any]], depth: int = DEPTH) -> list[RankedFile]:
    """Chunks best first → the first `depth` distinct files, each at its best chunk's place."""
    seen: dict[str, RankedFile] = {}
    for hit in hits:
        if hit["file_id"] in seen:
            continue
        seen[hit["file_id"]] = RankedFile(
            file_id=hit["file_id"],
            filename=hit.get("filename"),
            attributes=dict(hit.get("attributes") or {}),
            score=float(hit["score"]),
            text=str(hit.get("text") or ""),
        )
        if len(seen) == depth:
            break
    return list(seen.values())


@dataclass(frozen=True)
class QuestionScore:
    rank: int | None
    hit_at_1: float
    hit_at_3: float
    hit_at_10: float
    reciprocal_rank: float
    ndcg_at_10: float


def _dcg(ranks: Sequence[int]) -> float:
    return sum(1.0 / math.log2(r + 1) for r in ranks)


def score_question(relevance: Sequence[bool], relevant_in_store: int) -> QuestionScore:
    """Score one ranked list of files (True = right answer), best first."""
    found = [i + 1 for i, ok in enumerate(relevance[:DEPTH]) if ok]
    rank = found[0] if found else None
    ideal = min(DEPTH, max(relevant_in_store, len(found)))
    hits = {k: 1.0 if rank is not None and rank <= k else 0.0 for k in CUTOFFS}
    return QuestionScore(
        rank=rank,
        hit_at_1=hits[1],
        hit_at_3=hits[3],
        hit_at_10=hits[10],
        reciprocal_rank=1.0 / rank if rank is not None else 0.0,
        ndcg_at_10=_dcg(found) / _dcg(range(1, ideal + 1)) if ideal else 0.0,
    )


MISSED = QuestionScore(None, 0.0, 0.0, 0.0, 0.0, 0.0)  # how a failed search counts


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[index - 1]


@dataclass(frozen=True)
class Latency:
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None

    def to_json(self) -> dict[str, float | None]:
        return {k: _round(v) for k, v in vars(self).items()}


def latency_summary(values_ms: Sequence[float]) -> Latency:
    return Latency(
        p50=percentile(values_ms, 50),
        p90=percentile(values_ms, 90),
        p99=percentile(values_ms, 99),
        mean=sum(values_ms) / len(values_ms) if values_ms else None,
    )


@dataclass(frozen=True)
class CriterionSummary:
    name: str
    questions: int
    passed: int
    failed: int
    errored: int
    hit_at_1: float
    hit_at_3: float
    hit_at_10: float
    mrr: float
    ndcg_at_10: float
    latency_ms: Latency

    def to_json(self) -> dict[str, Any]:
        return {
            "testing_criteria": self.name,
            "passed": self.passed,
            "failed": self.failed,
            "errored": self.errored,
            "metrics": {
                "hit_at_1": _round(self.hit_at_1),
                "hit_at_3": _round(self.hit_at_3),
                "hit_at_10": _round(self.hit_at_10),
                "mrr": _round(self.mrr),
                "ndcg_at_10": _round(self.ndcg_at_10),
            },
            "latency_ms": self.latency_ms.to_json(),
        }


def summarize(
    name: str,
    scores: Sequence[QuestionScore | None],
    *,
    pass_k: int,
    latencies_ms: Sequence[float],
) -> CriterionSummary:
    """Means over the questions (None = the search failed: counted 0 and as errored)."""
    n = len(scores)
    counted = [s if s is not None else MISSED for s in scores]

    def mean(attr: str) -> float:
        return sum(getattr(s, attr) for s in counted) / n if n else 0.0

    passed = sum(1 for s in scores if s is not None and s.rank is not None and s.rank <= pass_k)
    errored = sum(1 for s in scores if s is None)
    return CriterionSummary(
        name=name,
        questions=n,
        passed=passed,
        failed=n - passed - errored,
        errored=errored,
        hit_at_1=mean("hit_at_1"),
        hit_at_3=mean("hit_at_3"),
        hit_at_10=mean("hit_at_10"),
        mrr=mean("reciprocal_rank"),
        ndcg_at_10=mean("ndcg_at_10"),
        latency_ms=latency_summary(latencies_ms),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
