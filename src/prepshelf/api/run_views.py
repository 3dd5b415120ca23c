"""Schedules, evals, eval runs and output items → response objects (OpenAI's Evals names)."""

from __future__ import annotations

from typing import Any

from prepshelf.api.views import ts
from prepshelf.domain.evals import Eval, EvalRun, OutputItem
from prepshelf.domain.schedules import CATCH_UP_POLICY, Schedule

_NO_COUNTS = {"total": 0, "errored": 0, "failed": 0, "passed": 0}


def schedule_object(s: Schedule) -> dict[str, Any]:
    return {
        "id": s.id,
        "object": "schedule",
        "name": s.name,
        "kind": s.kind,
        "params": s.params,
        "cron": s.cron,
        "timezone": s.timezone,
        "status": s.status,
        "catch_up": CATCH_UP_POLICY,
        "next_run_at": ts(s.next_run_at),
        "last_run_at": ts(s.last_run_at),
        "created_at": ts(s.created_at),
        "updated_at": ts(s.updated_at),
        "metadata": s.metadata,
        "links": {"self": f"/v1/schedules/{s.id}", "runs": f"/v1/schedules/{s.id}/runs"},
    }


def eval_object(e: Eval) -> dict[str, Any]:
    return {
        "id": e.id,
        "object": "eval",
        "name": e.name,
        "created_at": ts(e.created_at),
        "updated_at": ts(e.updated_at),
        "vector_store_id": e.vector_store_id,
        "data_source_config": e.data_source_config,
        "testing_criteria": [c.to_json() for c in e.testing_criteria],
        "metadata": e.metadata,
    }


def run_object(r: EvalRun) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "eval.run",
        "eval_id": r.eval_id,
        "name": r.name,
        "status": r.status,
        "model": r.embedding_model,
        "data_source": {"type": "vector_store", "vector_store_id": r.vector_store_id},
        "testing_criteria": [c.to_json() for c in r.testing_criteria],
        "result_counts": r.result_counts or dict(_NO_COUNTS),
        "per_testing_criteria_results": r.per_testing_criteria_results or [],
        "per_model_usage": [],  # no language model takes part in a retrieval eval
        "report_url": f"/ui#/evals/{r.eval_id}",
        "error": r.error if r.status == "failed" else None,
        "created_at": ts(r.created_at),
        "completed_at": ts(r.completed_at),
        "metadata": r.metadata,
        # Beyond OpenAI: the job behind the run, what it searched, and what changed.
        "job_id": r.job_id,
        "schedule_id": r.schedule_id,
        "store": {"files": r.store_files, "fingerprint": r.store_fingerprint},
        "settings_fingerprint": r.settings_fingerprint,
        "changes": {"store": r.store_changed, "settings": r.settings_changed},
    }


def output_item_object(item: OutputItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "object": "eval.run.output_item",
        "eval_id": item.eval_id,
        "run_id": item.run_id,
        "status": item.status,
        "datasource_item_id": item.item_no,
        "datasource_item": item.question,
        "results": item.results,
        "sample": None,
        "created_at": ts(item.created_at),
    }
