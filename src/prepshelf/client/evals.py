"""`prepshelf eval run|list|diff`: retrieval evaluations from the terminal, the same figures
and per-question differences as /ui (every number comes from the API)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from prepshelf.client.http import (
    ApiError,
    ClientConfig,
    async_client,
    check,
    find_store,
    iter_pages,
)
from prepshelf.client.render import Output

METRICS = (
    ("hit_at_1", "hit@1"),
    ("hit_at_3", "hit@3"),
    ("hit_at_10", "hit@10"),
    ("mrr", "MRR"),
    ("ndcg_at_10", "nDCG@10"),
)
_FINAL = ("succeeded", "failed", "cancelled")


async def find_eval(client: httpx.AsyncClient, name_or_id: str) -> dict[str, Any] | None:
    """An eval by id, or the newest eval with this exact name."""
    if name_or_id.startswith("eval_"):
        response = await client.get(f"/v1/evals/{name_or_id}")
        return None if response.status_code == 404 else check(response)
    async for found in iter_pages(client, "/v1/evals", {"order": "desc"}):
        if found.get("name") == name_or_id:
            return found
    return None


async def _eval(client: httpx.AsyncClient, name_or_id: str) -> dict[str, Any]:
    found = await find_eval(client, name_or_id)
    if found is None:
        raise ApiError(404, f"no eval named {name_or_id!r}")
    return found


async def _store_id(client: httpx.AsyncClient, name_or_id: str) -> str:
    if name_or_id.startswith("vs_"):
        return name_or_id
    store = await find_store(client, name_or_id)
    if store is None:
        raise ApiError(404, f"no vector store named {name_or_id!r}")
    return str(store["id"])


def _figure(value: Any) -> str:
    return "" if value is None else f"{float(value):.3f}"


def run_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per run and testing criterion: the table `list` and `run` print."""
    rows = []
    for run in runs:
        changed = ",".join(k for k, v in (run.get("changes") or {}).items() if v)
        results = run.get("per_testing_criteria_results") or [{}]
        for result in results:
            metrics = result.get("metrics") or {}
            total = sum(result.get(k, 0) for k in ("passed", "failed", "errored"))
            p50 = (result.get("latency_ms") or {}).get("p50")
            rows.append(
                [
                    run["id"],
                    run.get("name") or "",
                    run["status"],
                    result.get("testing_criteria", ""),
                    *(_figure(metrics.get(key)) for key, _ in METRICS),
                    f"{result.get('passed', 0)}/{total}" if result else "",
                    "" if p50 is None else f"{p50:.1f}",
                    changed,
                ]
            )
    return rows


RUN_COLUMNS = [
    "run",
    "name",
    "status",
    "criterion",
    *(label for _, label in METRICS),
    "passed",
    "p50 ms",
    "changed",
]


async def _create_eval(
    client: httpx.AsyncClient, name: str, questions: Path, store_id: str, hybrid: bool
) -> dict[str, Any]:
    with questions.open("rb") as fh:
        uploaded = check(
            await client.post(
                "/v1/files", data={"purpose": "evals"}, files={"file": (questions.name, fh)}
            )
        )
    criteria: list[dict[str, Any]] = [{"type": "search", "name": "default"}]
    if hybrid:
        criteria.append(
            {
                "type": "search",
                "name": "hybrid",
                "ranking_options": {"hybrid_search": {"embedding_weight": 1, "text_weight": 1}},
            }
        )
    return check(
        await client.post(
            "/v1/evals",
            json={
                "name": name,
                "data_source_config": {"type": "file", "file_id": uploaded["id"]},
                "vector_store_id": store_id,
                "testing_criteria": criteria,
            },
        )
    )


async def run(
    config: ClientConfig,
    *,
    eval_name: str,
    questions: Path | None,
    store: str | None,
    run_name: str | None,
    hybrid: bool,
    wait: bool,
    out: Output,
) -> int:
    async with async_client(config) as client:
        evaluation = await find_eval(client, eval_name)
        store_id = await _store_id(client, store) if store else None
        if evaluation is None:
            if questions is None or store_id is None:
                raise ApiError(
                    404,
                    f"no eval named {eval_name!r}: give --questions FILE and --store to create it",
                )
            evaluation = await _create_eval(client, eval_name, questions, store_id, hybrid)
            out.line(f"created eval {eval_name!r} ({evaluation['id']}) from {questions.name}")
        body: dict[str, Any] = {"name": run_name} if run_name else {}
        if store_id:
            body["data_source"] = {"type": "vector_store", "vector_store_id": store_id}
        created = check(await client.post(f"/v1/evals/{evaluation['id']}/runs", json=body))
        out.line(f"run {created['id']} (job {created['job_id']}) queued")
        if not wait:
            return 0
        job = await _follow(client, created["job_id"], out)
        finished = check(await client.get(f"/v1/evals/{evaluation['id']}/runs/{created['id']}"))
    out.table(
        RUN_COLUMNS,
        run_rows([finished]),
        title=f"eval {evaluation.get('name') or evaluation['id']}",
    )
    if job["status"] != "succeeded":
        out.line(f"run {job['status']}: {(job.get('error') or {}).get('message', '')}")
        return 1
    counts = finished["result_counts"]
    out.line(
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['errored']} errored "
        f"of {counts['total']} question(s)"
    )
    return 0


async def _follow(client: httpx.AsyncClient, job_id: str, out: Output) -> dict[str, Any]:
    """Poll the run's job until it ends, printing its progress when it moves."""
    last = None
    while True:
        job = check(await client.get(f"/v1/jobs/{job_id}"))
        progress = job.get("progress") or {}
        now = (job["status"], progress.get("done"))
        if now != last and progress.get("total"):
            unit = progress.get("unit") or ""
            out.line(f"{job['status']}: {progress['done']}/{progress['total']} {unit}")
        last = now
        if job["status"] in _FINAL:
            return dict(job)
        await asyncio.sleep(0.5)


async def list_evals(
    config: ClientConfig, *, eval_name: str | None, limit: int, out: Output
) -> int:
    async with async_client(config) as client:
        if eval_name is None:
            page = check(await client.get("/v1/evals", params={"limit": limit}))
            out.table(
                ["eval", "name", "questions", "criteria", "vector store"],
                [
                    [
                        e["id"],
                        e.get("name") or "",
                        e["data_source_config"].get("question_count"),
                        ",".join(c["name"] for c in e["testing_criteria"]),
                        e.get("vector_store_id") or "",
                    ]
                    for e in page["data"]
                ],
            )
            return 0
        evaluation = await _eval(client, eval_name)
        page = check(
            await client.get(f"/v1/evals/{evaluation['id']}/runs", params={"limit": limit})
        )
    out.table(
        RUN_COLUMNS,
        run_rows(page["data"]),
        title=f"runs of {evaluation.get('name') or evaluation['id']}, newest first",
    )
    return 0


async def diff(
    config: ClientConfig,
    *,
    eval_name: str,
    run_id: str | None,
    base_id: str | None,
    show_all: bool,
    out: Output,
) -> int:
    async with async_client(config) as client:
        evaluation = await _eval(client, eval_name)
        if run_id is None:
            page = check(
                await client.get(
                    f"/v1/evals/{evaluation['id']}/runs", params={"limit": 100, "order": "desc"}
                )
            )
            done = [r for r in page["data"] if r["status"] == "completed"]
            if not done:
                raise ApiError(404, f"eval {eval_name!r} has no completed run")
            run_id = done[0]["id"]
        params = {"base_run_id": base_id} if base_id else {}
        result = check(
            await client.get(f"/v1/evals/{evaluation['id']}/runs/{run_id}/diff", params=params)
        )
    out.line(f"{result['run_id']} against {result['base_run_id']}")
    out.table(
        ["criterion", *(label for _, label in METRICS)],
        [
            [c["name"], *(_delta(c["metrics"][key]) for key, _ in METRICS)]
            for c in result["testing_criteria"]
        ],
        title="figures (before -> after)",
    )
    rows = [d for d in result["data"] if show_all or d["change"] != "same"]
    out.table(
        [
            "#",
            "criterion",
            "change",
            "rank before",
            "rank after",
            "top hit before",
            "top hit after",
            "question",
        ],
        [
            [
                d["datasource_item_id"],
                d["testing_criteria"],
                d["change"],
                "error" if d["base_error"] else d["base_rank"] or "-",
                "error" if d["error"] else d["rank"] or "-",
                d["base_top_hit"] or "",
                d["top_hit"] or "",
                d["question"][:120],
            ]
            for d in rows
        ],
        title="questions that changed" if not show_all else "all questions",
    )
    counts = result["counts"]
    out.line(f"{counts['worse']} worse, {counts['better']} better, {counts['same']} same")
    return 1 if counts["worse"] else 0


def _delta(m: dict[str, float]) -> str:
    return f"{m['base']:.3f} -> {m['run']:.3f} ({m['delta']:+.3f})"
