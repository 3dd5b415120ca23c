"""The per-question difference between two runs of one eval (pure).

For each question and testing criterion present in both runs: the rank of the first right
answer in each (none found counts as rank 11, below the first 10 files), and whether the run
got `worse`, `better` or stayed the `same` compared with the base run. Rows come worse first
(largest drop first), then better, then same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prepshelf.domain.evals import DEPTH, OutputItem

Change = Literal["worse", "better", "same"]
METRICS = ("hit_at_1", "hit_at_3", "hit_at_10", "mrr", "ndcg_at_10")
_MISSING = DEPTH + 1


@dataclass(frozen=True)
class QuestionChange:
    item_no: int
    question: str
    criterion: str
    change: Change
    base_rank: int | None
    rank: int | None
    base_top: str | None
    top: str | None
    base_error: str | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource_item_id": self.item_no,
            "question": self.question,
            "testing_criteria": self.criterion,
            "change": self.change,
            "base_rank": self.base_rank,
            "rank": self.rank,
            "base_top_hit": self.base_top,
            "top_hit": self.top,
            "base_error": self.base_error,
            "error": self.error,
        }


def _effective(result: dict[str, Any]) -> int:
    rank = result.get("rank")
    return _MISSING if "error" in result or rank is None else int(rank)


def _top(result: dict[str, Any]) -> str | None:
    hits = (result.get("sample") or {}).get("hits") or []
    return (hits[0].get("filename") or hits[0].get("file_id")) if hits else None


def _error(result: dict[str, Any]) -> str | None:
    err = result.get("error")
    return str(err.get("message")) if isinstance(err, dict) else None


def diff_items(base: Sequence[OutputItem], run: Sequence[OutputItem]) -> list[QuestionChange]:
    base_by_no = {item.item_no: item for item in base}
    rows: list[tuple[int, QuestionChange]] = []
    for item in run:
        before = base_by_no.get(item.item_no)
        if before is None:
            continue
        old = {r["name"]: r for r in before.results}
        for result in item.results:
            prior = old.get(result["name"])
            if prior is None:
                continue
            delta = _effective(result) - _effective(prior)  # > 0: the right answer fell
            change: Change = "worse" if delta > 0 else "better" if delta < 0 else "same"
            rows.append(
                (
                    delta,
                    QuestionChange(
                        item_no=item.item_no,
                        question=str(item.question.get("question", "")),
                        criterion=result["name"],
                        change=change,
                        base_rank=prior.get("rank"),
                        rank=result.get("rank"),
                        base_top=_top(prior),
                        top=_top(result),
                        base_error=_error(prior),
                        error=_error(result),
                    ),
                )
            )
    order = {"worse": 0, "better": 1, "same": 2}
    rows.sort(key=lambda r: (order[r[1].change], -abs(r[0]), r[1].item_no, r[1].criterion))
    return [change for _, change in rows]


def metric_deltas(base: list[dict[str, Any]], run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per criterion present in both runs: each metric's base value, value and difference."""
    before = {c["testing_criteria"]: c for c in base}
    out = []
    for current in run:
        prior = before.get(current["testing_criteria"])
        if prior is None:
            continue
        metrics = {
            m: {
                "base": prior["metrics"][m],
                "run": current["metrics"][m],
                "delta": round(current["metrics"][m] - prior["metrics"][m], 6),
            }
            for m in METRICS
        }
        out.append({"name": current["testing_criteria"], "metrics": metrics})
    return out
