"""Retrieval evaluations: questions with their right answers, the search settings compared
side by side ("testing criteria", as OpenAI's Evals API calls what grades a run), and runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Scalar = str | int | float | bool
RunStatus = Literal["queued", "in_progress", "completed", "failed", "canceled"]
# A run's status is its job's, in OpenAI's eval-run words.
RUN_STATUS: dict[str, RunStatus] = {
    "queued": "queued",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "canceled",
}
CUTOFFS = (1, 3, 10)  # hit@k reported for these k; nDCG and MRR look at the first 10 files
DEPTH = 10


@dataclass(frozen=True)
class Question:
    """One question of an eval set. A retrieved file is a right answer when its filename, or
    its `source` attribute (the path a sync or `prepshelf ingest` recorded), is one of
    `expected_filenames`, or when its attributes hold every key/value of one of
    `expected_attributes`."""

    item_no: int
    question: str
    expected_filenames: tuple[str, ...] = ()
    expected_attributes: tuple[dict[str, Scalar], ...] = ()
    ref: str | None = None  # the set's own id for the question, when it gave one

    def is_relevant(self, filename: str | None, attributes: dict[str, Any] | None) -> bool:
        attrs = attributes or {}
        source = attrs.get("source")
        if filename in self.expected_filenames or (
            isinstance(source, str) and source in self.expected_filenames
        ):
            return True
        return any(
            all(k in attrs and _same(attrs[k], v) for k, v in want.items())
            for want in self.expected_attributes
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"question": self.question}
        if self.ref is not None:
            out["id"] = self.ref
        if self.expected_filenames:
            out["expected_filenames"] = list(self.expected_filenames)
        if self.expected_attributes:
            out["expected_attributes"] = [dict(a) for a in self.expected_attributes]
        return out

    @classmethod
    def from_json(cls, item_no: int, data: dict[str, Any]) -> Question:
        return cls(
            item_no=item_no,
            question=data["question"],
            expected_filenames=tuple(data.get("expected_filenames", ())),
            expected_attributes=tuple(dict(a) for a in data.get("expected_attributes", ())),
            ref=data.get("id"),
        )


def _same(have: Any, want: Scalar) -> bool:
    """JSON equality as PostgreSQL's jsonb compares (true is not 1; 1 equals 1.0)."""
    if isinstance(have, bool) or isinstance(want, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have == want
    return bool(have == want)


@dataclass(frozen=True)
class TestingCriterion:
    """One search setting a run measures. Unset options take the server's search defaults
    at run time (as /v1/vector_stores/{id}/search does), and the run records what they were."""

    name: str
    score_threshold: float = 0.0
    hybrid_search: tuple[float, float] | None = None  # (embedding_weight, text_weight)
    ef_search: int | None = None
    filters: dict[str, Any] | None = None
    pass_k: int = 3  # a question passes when a right answer is among the first pass_k files

    __test__ = False  # not a pytest test class, despite the name

    def to_json(self) -> dict[str, Any]:
        ranking: dict[str, Any] = {"score_threshold": self.score_threshold}
        if self.hybrid_search is not None:
            ranking["hybrid_search"] = {
                "embedding_weight": self.hybrid_search[0],
                "text_weight": self.hybrid_search[1],
            }
        return {
            "type": "search",
            "name": self.name,
            "ranking_options": ranking,
            "ef_search": self.ef_search,
            "filters": self.filters,
            "pass_k": self.pass_k,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestingCriterion:
        ranking = data.get("ranking_options") or {}
        hybrid = ranking.get("hybrid_search")
        return cls(
            name=data["name"],
            score_threshold=float(ranking.get("score_threshold", 0.0)),
            hybrid_search=(
                (float(hybrid["embedding_weight"]), float(hybrid["text_weight"]))
                if hybrid
                else None
            ),
            ef_search=data.get("ef_search"),
            filters=data.get("filters"),
            pass_k=int(data.get("pass_k", 3)),
        )


DEFAULT_CRITERIA = (TestingCriterion(name="default"),)


@dataclass(frozen=True)
class Eval:
    id: str
    project_id: str
    name: str | None
    vector_store_id: str | None
    data_source_config: dict[str, Any]
    testing_criteria: tuple[TestingCriterion, ...]
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EvalRun:
    id: str
    eval_id: str
    project_id: str
    name: str | None
    vector_store_id: str
    testing_criteria: tuple[TestingCriterion, ...]
    metadata: dict[str, str]
    created_at: datetime
    completed_at: datetime | None
    embedding_model: str | None
    store_files: int | None
    store_fingerprint: str | None
    settings_fingerprint: str | None
    store_changed: bool | None
    settings_changed: bool | None
    result_counts: dict[str, int] | None
    per_testing_criteria_results: list[dict[str, Any]] | None
    job_id: str | None
    job_status: str | None
    error: dict[str, Any] | None
    schedule_id: str | None

    @property
    def status(self) -> RunStatus:
        return RUN_STATUS.get(self.job_status or "failed", "failed")


@dataclass(frozen=True)
class OutputItem:
    id: str
    run_id: str
    eval_id: str
    item_no: int
    status: Literal["pass", "fail", "error"]
    question: dict[str, Any]
    results: list[dict[str, Any]]
    created_at: datetime
