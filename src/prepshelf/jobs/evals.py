"""The evaluation run: every question of an eval set against a vector store, once per
testing criterion (search setting), scored against the set's right answers.

Questions are searched through the same store code as /v1/vector_stores/{id}/search, with
the worker's embedder (one query embedding per question, shared by the criteria). Output
items are written in checkpoints together with the job's progress; a run picked up again
continues at the first question without an item. The run's figures are computed from all its
items at the end (pipeline/eval_metrics.py), and stored with what was searched: the store's
file fingerprint and the resolved settings, compared with the run before to mark changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from prepshelf.domain.evals import EvalRun, Question, TestingCriterion
from prepshelf.domain.vector_stores import VectorStore
from prepshelf.errors import InvalidRequestError
from prepshelf.ids import new_output_item_id
from prepshelf.jobs.runs import RunCancelled, RunContext, RunFailed
from prepshelf.pipeline.eval_metrics import (
    QuestionScore,
    rank_files,
    score_question,
    summarize,
)
from prepshelf.settings import Settings
from prepshelf.store import eval_runs as eval_runs_db
from prepshelf.store import evals as evals_db
from prepshelf.store import hybrid as hybrid_db
from prepshelf.store import runs as runs_db
from prepshelf.store import vector_stores as stores_db
from prepshelf.store.hybrid import HybridWeights

CHECKPOINT = 25  # questions per written checkpoint
SEARCH_DEPTH = 50  # chunks asked for, so that the first 10 distinct files are there
SAMPLE_HITS = 10
_SNIPPET = 200


@dataclass(frozen=True)
class _Setting:
    """A criterion with the server defaults filled in: what the search really used."""

    criterion: TestingCriterion
    weights: HybridWeights | None
    ef_search: int

    def to_json(self) -> dict[str, Any]:
        out = self.criterion.to_json()
        out["mode"] = "vector" if self.weights is None else "hybrid"
        out["ef_search"] = self.ef_search
        if self.weights is not None:
            out["ranking_options"]["hybrid_search"] = {
                "embedding_weight": self.weights.embedding_weight,
                "text_weight": self.weights.text_weight,
            }
        return out


def resolve(criteria: Sequence[TestingCriterion], settings: Settings) -> list[_Setting]:
    resolved = []
    for c in criteria:
        if c.hybrid_search is not None:
            weights: HybridWeights | None = HybridWeights(*c.hybrid_search)
        else:
            weights = HybridWeights(1.0, 1.0) if settings.search_hybrid_default else None
        resolved.append(_Setting(c, weights, c.ef_search or settings.search_ef_search))
    return resolved


def settings_fingerprint(settings: list[_Setting], model: str, embedder: str) -> str:
    blob = json.dumps(
        {"criteria": [s.to_json() for s in settings], "model": model, "embedder": embedder},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


async def run_eval(ctx: RunContext) -> None:
    res, job = ctx.res, ctx.job
    if job.eval_run_id is None:
        eval_id = job.params.get("eval_id")
        raise RunFailed(f"eval {eval_id} no longer exists, or names no vector store to search")
    async with res.pool.connection() as conn:
        run = await eval_runs_db.get_run(conn, run_id=job.eval_run_id)
        if run is None:
            raise RunFailed(f"eval run {job.eval_run_id} was deleted")
        store = await stores_db.get_store(
            conn, project_id=job.project_id, store_id=run.vector_store_id
        )
        if store is None:
            raise RunFailed(f"vector store {run.vector_store_id} no longer exists")
        if store.expired_at is not None:
            raise RunFailed(f"vector store {store.id} has expired")
        questions = await evals_db.questions(conn, eval_id=run.eval_id)
        files, fingerprint = await evals_db.store_snapshot(conn, store_id=store.id)
        done = await eval_runs_db.done_items(conn, run_id=run.id)
    settings = resolve(run.testing_criteria, res.settings)
    embedder = f"{res.settings.embedder}:{res.settings.local_backend}"
    async with res.pool.connection() as conn:
        await eval_runs_db.start_run(
            conn,
            run_id=run.id,
            embedding_model=store.embedding_model,
            store_files=files,
            store_fingerprint=fingerprint,
            settings_fingerprint=settings_fingerprint(settings, store.embedding_model, embedder),
            testing_criteria=tuple(s.criterion for s in settings),
        )
    await ctx.enter("searching", total=len(questions), unit="questions")
    pending = [q for q in questions if q.item_no not in done]
    finished = len(questions) - len(pending)
    for start in range(0, len(pending), CHECKPOINT):
        chunk = pending[start : start + CHECKPOINT]
        items = [await _item(ctx, store, settings, q) for q in chunk]
        finished += len(chunk)
        # The checkpoint: the items and the job's progress in one transaction.
        async with res.pool.connection() as conn, conn.transaction():
            await eval_runs_db.insert_items(conn, run_id=run.id, items=items)
            cancel = await runs_db.set_progress(conn, job_id=ctx.job.id, done=finished)
        if cancel:
            raise RunCancelled()
    await _complete(ctx, run, settings)


async def _item(
    ctx: RunContext, store: VectorStore, settings: list[_Setting], question: Question
) -> tuple[str, int, str, list[dict[str, Any]]]:
    """Search one question with every setting; (item id, item_no, status, results)."""
    res = ctx.res
    vector, embed_ms = await asyncio.to_thread(_embed, ctx, question.question)
    results: list[dict[str, Any]] = []
    async with res.pool.connection() as conn:
        relevant = await evals_db.relevant_in_store(conn, store_id=store.id, question=question)
        for setting in settings:
            started = time.perf_counter()
            try:
                hits = await hybrid_db.search(
                    conn,
                    store_id=store.id,
                    dimensions=store.dimensions,
                    query=question.question,
                    query_vector=vector,
                    limit=SEARCH_DEPTH,
                    filters=setting.criterion.filters,
                    score_threshold=setting.criterion.score_threshold,
                    weights=setting.weights,
                    ef_search=setting.ef_search,
                )
            except (InvalidRequestError, psycopg.DataError) as exc:  # e.g. a filter value
                results.append(
                    {
                        "name": setting.criterion.name,
                        "type": "search",
                        "passed": False,
                        "error": {"message": getattr(exc, "message", str(exc))},
                    }
                )
                continue
            search_ms = (time.perf_counter() - started) * 1000
            results.append(_result(setting, question, hits, relevant, embed_ms, search_ms))
    if any("error" in r for r in results):
        status = "error"
    else:
        status = "pass" if all(r["passed"] for r in results) else "fail"
    return new_output_item_id(), question.item_no, status, results


def _embed(ctx: RunContext, text: str) -> tuple[np.ndarray, float]:
    """The query's vector and the model's own time for it (waiting for the model excluded)."""
    with ctx.res.model_lock:
        started = time.perf_counter()
        vectors = ctx.res.embedder.embed([text])
        return vectors[0], (time.perf_counter() - started) * 1000


def _result(
    setting: _Setting,
    question: Question,
    hits: list[dict[str, Any]],
    relevant: int,
    embed_ms: float,
    search_ms: float,
) -> dict[str, Any]:
    ranked = rank_files(hits)
    flags = [question.is_relevant(f.filename, f.attributes) for f in ranked]
    score = score_question(flags, relevant)
    return {
        "name": setting.criterion.name,
        "type": "search",
        "passed": score.rank is not None and score.rank <= setting.criterion.pass_k,
        "score": score.reciprocal_rank,
        "rank": score.rank,
        "hit_at_1": score.hit_at_1,
        "hit_at_3": score.hit_at_3,
        "hit_at_10": score.hit_at_10,
        "reciprocal_rank": score.reciprocal_rank,
        "ndcg_at_10": score.ndcg_at_10,
        "relevant_in_store": relevant,
        "latency_ms": round(embed_ms + search_ms, 3),
        "embedding_ms": round(embed_ms, 3),
        "search_ms": round(search_ms, 3),
        "sample": {
            "hits": [
                {
                    "file_id": f.file_id,
                    "filename": f.filename,
                    "score": round(f.score, 6),
                    "relevant": ok,
                    "text": f.text[:_SNIPPET],
                }
                for f, ok in list(zip(ranked, flags, strict=True))[:SAMPLE_HITS]
            ]
        },
    }


def score_of(result: dict[str, Any]) -> QuestionScore | None:
    """An output item's stored result back as a score (None: the search failed)."""
    if "error" in result:
        return None
    return QuestionScore(
        rank=result["rank"],
        hit_at_1=result["hit_at_1"],
        hit_at_3=result["hit_at_3"],
        hit_at_10=result["hit_at_10"],
        reciprocal_rank=result["reciprocal_rank"],
        ndcg_at_10=result["ndcg_at_10"],
    )


async def _complete(ctx: RunContext, run: EvalRun, settings: list[_Setting]) -> None:
    res = ctx.res
    async with res.pool.connection() as conn:
        items = await eval_runs_db.all_items(conn, run_id=run.id)
        fresh = await eval_runs_db.get_run(conn, run_id=run.id)
        assert fresh is not None
        before = await eval_runs_db.previous_completed_run(
            conn, eval_id=run.eval_id, before=run.created_at, run_id=run.id
        )
    summaries = []
    for setting in settings:
        name = setting.criterion.name
        results = [next(r for r in item.results if r["name"] == name) for item in items]
        summaries.append(
            summarize(
                name,
                [score_of(r) for r in results],
                pass_k=setting.criterion.pass_k,
                latencies_ms=[r["latency_ms"] for r in results if "latency_ms" in r],
            ).to_json()
        )
    counts = {
        "total": len(items),
        "errored": sum(1 for i in items if i.status == "error"),
        "failed": sum(1 for i in items if i.status == "fail"),
        "passed": sum(1 for i in items if i.status == "pass"),
    }
    store_changed = before is not None and before.store_fingerprint != fresh.store_fingerprint
    settings_changed = (
        before is not None and before.settings_fingerprint != fresh.settings_fingerprint
    )
    async with res.pool.connection() as conn, conn.transaction():
        await eval_runs_db.complete_run(
            conn,
            run_id=run.id,
            result_counts=counts,
            per_testing_criteria_results=summaries,
            store_changed=store_changed,
            settings_changed=settings_changed,
        )
        await runs_db.finish_succeeded(
            conn,
            job=ctx.job,
            result={
                "object": "eval.run.summary",
                "eval_id": run.eval_id,
                "run_id": run.id,
                "result_counts": counts,
                "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
