"""/v1/evals: retrieval evaluations, their runs, output items and run-to-run differences.

Shapes follow OpenAI's Evals API (eval, eval.run, eval.run.output_item, result_counts,
per_testing_criteria_results); what is graded is retrieval: each testing criterion is a
search setting, each output item a question with the rank of its first right answer.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from prepshelf.api.deps import ConnDep, PageDep, ProjectDep
from prepshelf.api.eval_schemas import (
    EvalCreate,
    EvalUpdate,
    QuestionsFile,
    RunCreate,
    SearchCriterion,
)
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.run_targets import checked_eval, checked_store
from prepshelf.api.run_views import eval_object, output_item_object, run_object
from prepshelf.api.views import list_object
from prepshelf.domain.evals import DEFAULT_CRITERIA, EvalRun, Question, TestingCriterion
from prepshelf.errors import InvalidRequestError, NotFoundError
from prepshelf.ids import new_eval_id
from prepshelf.jobs.cancel import cancel_jobs
from prepshelf.jobs.runs import start_run
from prepshelf.pipeline.eval_diff import diff_items, metric_deltas
from prepshelf.pipeline.eval_sets import parse_eval_set, question_from
from prepshelf.store import eval_runs as eval_runs_db
from prepshelf.store import evals as evals_db
from prepshelf.store import files as files_db
from prepshelf.store import schedules as schedules_db
from prepshelf.store.blobs import BlobStore
from prepshelf.store.pages import PageRequest
from prepshelf.store.search import filter_sql

router = APIRouter(prefix="/v1/evals", tags=["evals"], route_class=IdempotentRoute)

MAX_EVAL_SET_BYTES = 32 * 1024 * 1024
_ACTIVE = ("queued", "running")


def _criteria(given: list[SearchCriterion] | None) -> tuple[TestingCriterion, ...]:
    if not given:
        return DEFAULT_CRITERIA
    out = []
    for i, c in enumerate(given):
        if c.filters is not None:
            filter_sql(c.filters, [], param=f"testing_criteria[{i}].filters")  # 400 if malformed
        ranking = c.ranking_options
        hybrid = ranking.hybrid_search if ranking else None
        out.append(
            TestingCriterion(
                name=c.name,
                score_threshold=ranking.score_threshold if ranking else 0.0,
                hybrid_search=(hybrid.embedding_weight, hybrid.text_weight) if hybrid else None,
                ef_search=c.ef_search,
                filters=c.filters,
                pass_k=c.pass_k,
            )
        )
    return tuple(out)


def _unwrap(item: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's eval items come as {"item": {...}}; bare objects are accepted too."""
    inner = item.get("item")
    return inner if isinstance(inner, dict) else item


def _read(blobs: BlobStore, key: str) -> bytes:
    with blobs.open_reader(key) as fh:
        return fh.read(MAX_EVAL_SET_BYTES + 1)


async def _questions(
    conn: Any, request: Request, project: str, body: EvalCreate
) -> tuple[list[Question], dict[str, Any]]:
    limit = request.app.state.settings.eval_max_questions
    source = body.data_source_config
    if isinstance(source, QuestionsFile):
        param = "data_source_config.file_id"
        file = await files_db.get_file(conn, project_id=project, file_id=source.file_id)
        if file is None:
            raise NotFoundError(f"No such File object: {source.file_id}", param=param)
        if file.bytes > MAX_EVAL_SET_BYTES:
            raise InvalidRequestError(
                f"An eval set may be at most {MAX_EVAL_SET_BYTES} bytes", param=param
            )
        data = await asyncio.to_thread(_read, request.app.state.blobs, file.blob_key)
        found = await asyncio.to_thread(
            parse_eval_set, data, filename=file.filename, max_questions=limit, param=param
        )
        return found, {"type": "file", "file_id": source.file_id, "question_count": len(found)}
    if len(source.items) > limit:
        raise InvalidRequestError(
            f"At most {limit} questions (PREPSHELF_EVAL_MAX_QUESTIONS)",
            param="data_source_config.items",
        )
    found = [
        question_from(_unwrap(item), item_no=i, where=f"data_source_config.items[{i}]")
        for i, item in enumerate(source.items)
    ]
    return found, {"type": "items", "question_count": len(found)}


@router.post("")
async def create_eval(
    body: EvalCreate, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    criteria = _criteria(body.testing_criteria)
    if body.vector_store_id is not None:
        await checked_store(conn, request, project, body.vector_store_id, param="vector_store_id")
    found, config = await _questions(conn, request, project, body)
    async with conn.transaction():
        created = await evals_db.insert_eval(
            conn,
            eval_id=new_eval_id(),
            project_id=project,
            name=body.name,
            vector_store_id=body.vector_store_id,
            data_source_config=config,
            testing_criteria=criteria,
            metadata=body.metadata or {},
            questions=found,
        )
    return eval_object(created)


@router.get("")
async def list_evals(project: ProjectDep, conn: ConnDep, page: PageDep) -> dict[str, Any]:
    found, has_more = await evals_db.list_evals(conn, project_id=project, page=page)
    return list_object([eval_object(e) for e in found], has_more)


@router.get("/{eval_id}")
async def retrieve_eval(eval_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    return eval_object(await checked_eval(conn, project, eval_id, param="eval_id"))


@router.post("/{eval_id}")
async def update_eval(
    eval_id: str, body: EvalUpdate, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    """Rename, re-point or change the testing criteria; the questions never change (create a
    new eval for new questions), so every run of an eval stays comparable."""
    current = await checked_eval(conn, project, eval_id, param="eval_id")
    fields = body.model_dump(exclude_unset=True)
    store_id = body.vector_store_id if "vector_store_id" in fields else current.vector_store_id
    if "vector_store_id" in fields and store_id is not None:
        await checked_store(conn, request, project, store_id, param="vector_store_id")
    updated = await evals_db.update_eval(
        conn,
        eval_id=eval_id,
        name=body.name if "name" in fields else current.name,
        vector_store_id=store_id,
        testing_criteria=(
            _criteria(body.testing_criteria)
            if body.testing_criteria is not None
            else current.testing_criteria
        ),
        metadata=body.metadata if body.metadata is not None else current.metadata,
    )
    return eval_object(updated)


@router.delete("/{eval_id}")
async def delete_eval(
    eval_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    """Delete the eval with its runs and output items, and the schedules that run it."""
    await checked_eval(conn, project, eval_id, param="eval_id")
    runs, _ = await eval_runs_db.list_runs(
        conn, eval_id=eval_id, page=PageRequest(limit=1000), status_in=list(_ACTIVE)
    )
    await cancel_jobs(request.app.state.queue, conn, [r.job_id for r in runs if r.job_id])
    async with conn.transaction():
        await schedules_db.delete_schedules_of_eval(conn, project_id=project, eval_id=eval_id)
        await evals_db.delete_eval(conn, project_id=project, eval_id=eval_id)
    return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}


# --- runs ---------------------------------------------------------------------------------


async def _run(conn: Any, project: str, eval_id: str, run_id: str) -> EvalRun:
    await checked_eval(conn, project, eval_id, param="eval_id")
    found = await eval_runs_db.get_run(conn, run_id=run_id, eval_id=eval_id)
    if found is None:
        raise NotFoundError(f"No such run of eval {eval_id}: {run_id}", param="run_id")
    return found


@router.post("/{eval_id}/runs")
async def create_run(
    eval_id: str,
    request: Request,
    project: ProjectDep,
    conn: ConnDep,
    body: RunCreate | None = None,
) -> dict[str, Any]:
    body = body or RunCreate.model_validate({})  # no body: a run of the eval's own store
    evaluation = await checked_eval(conn, project, eval_id, param="eval_id")
    store_id = body.data_source.vector_store_id if body.data_source else None
    store_id = store_id or evaluation.vector_store_id
    if store_id is None:
        raise InvalidRequestError(
            f"Eval {eval_id} names no vector store; give data_source.vector_store_id",
            param="data_source",
        )
    await checked_store(conn, request, project, store_id, param="data_source.vector_store_id")
    async with conn.transaction():
        started = await start_run(
            request.app.state.queue,
            conn,
            project_id=project,
            kind="eval_run",
            params={"eval_id": eval_id, "vector_store_id": store_id},
            run_name=body.name,
            run_metadata=body.metadata,
        )
    assert started.eval_run_id is not None
    return run_object(await _run(conn, project, eval_id, started.eval_run_id))


@router.get("/{eval_id}/runs")
async def list_runs(
    eval_id: str, project: ProjectDep, conn: ConnDep, page: PageDep
) -> dict[str, Any]:
    await checked_eval(conn, project, eval_id, param="eval_id")
    found, has_more = await eval_runs_db.list_runs(conn, eval_id=eval_id, page=page)
    return list_object([run_object(r) for r in found], has_more)


@router.get("/{eval_id}/runs/{run_id}")
async def retrieve_run(
    eval_id: str, run_id: str, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    return run_object(await _run(conn, project, eval_id, run_id))


@router.post("/{eval_id}/runs/{run_id}")
async def cancel_run(
    eval_id: str, run_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    """Cancel a queued or running run (OpenAI's cancel); a finished run is left as it is."""
    found = await _run(conn, project, eval_id, run_id)
    if found.job_id and found.job_status in _ACTIVE:
        await cancel_jobs(request.app.state.queue, conn, [found.job_id])
    return run_object(await _run(conn, project, eval_id, run_id))


@router.delete("/{eval_id}/runs/{run_id}")
async def delete_run(
    eval_id: str, run_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    found = await _run(conn, project, eval_id, run_id)
    if found.job_id and found.job_status in _ACTIVE:
        await cancel_jobs(request.app.state.queue, conn, [found.job_id])
    await eval_runs_db.delete_run(conn, eval_id=eval_id, run_id=run_id)
    return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}


@router.get("/{eval_id}/runs/{run_id}/output_items")
async def list_output_items(
    eval_id: str,
    run_id: str,
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    status: Annotated[Literal["pass", "fail", "error"] | None, Query()] = None,
) -> dict[str, Any]:
    await _run(conn, project, eval_id, run_id)
    found, has_more = await eval_runs_db.list_items(conn, run_id=run_id, page=page, status=status)
    return list_object([output_item_object(i) for i in found], has_more)


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}")
async def retrieve_output_item(
    eval_id: str, run_id: str, output_item_id: str, project: ProjectDep, conn: ConnDep
) -> dict[str, Any]:
    await _run(conn, project, eval_id, run_id)
    found = await eval_runs_db.get_item(conn, run_id=run_id, item_id=output_item_id)
    if found is None:
        raise NotFoundError(f"No such output item: {output_item_id}", param="output_item_id")
    return output_item_object(found)


@router.get("/{eval_id}/runs/{run_id}/diff")
async def diff_runs(
    eval_id: str,
    run_id: str,
    project: ProjectDep,
    conn: ConnDep,
    base_run_id: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Per question, what changed from `base_run_id` (default: the completed run before)."""
    run = await _run(conn, project, eval_id, run_id)
    if base_run_id is not None:
        base: EvalRun | None = await _run(conn, project, eval_id, base_run_id)
    else:
        base = await eval_runs_db.previous_completed_run(
            conn, eval_id=eval_id, before=run.created_at, run_id=run.id
        )
    if base is None:
        raise InvalidRequestError(
            f"Run {run_id} has no completed run before it to compare with; give base_run_id",
            param="base_run_id",
        )
    changes = diff_items(
        await eval_runs_db.all_items(conn, run_id=base.id),
        await eval_runs_db.all_items(conn, run_id=run.id),
    )
    counts = {k: sum(1 for c in changes if c.change == k) for k in ("worse", "better", "same")}
    return {
        "object": "eval.run.diff",
        "eval_id": eval_id,
        "run_id": run.id,
        "base_run_id": base.id,
        "counts": counts,
        "testing_criteria": metric_deltas(
            base.per_testing_criteria_results or [], run.per_testing_criteria_results or []
        ),
        "data": [c.to_json() for c in changes],
    }
