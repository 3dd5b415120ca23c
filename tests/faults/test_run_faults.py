"""Runs survive their worker: an evaluation run and a source sync whose worker is killed with
SIGKILL are put back on the queue by the sweeper and finish on another worker, with every
output item written once and the store exactly as the source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.helpers import generated_text, job, kill9, wait_job, worker_of
from support.runs import ok, store_files
from support.service import FAST_RECOVERY, Service

QUESTIONS = 1500  # enough that the run is still going when its worker is killed


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roots")


@pytest.fixture(scope="module")
def svc(
    database_url: str, roots: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    env = {
        "PREPSHELF_TORCH_THREADS": "1",
        **FAST_RECOVERY,
        "PREPSHELF_SYNC_ROOTS": str(roots),
        "PREPSHELF_RUN_POLL_INTERVAL_S": "1",
    }
    with Service(
        database_url, tmp_path_factory.mktemp("runs"), workers=1, extra_env=env
    ) as service:
        yield service


@pytest.fixture(scope="module")
def big_eval(svc: Service) -> dict[str, str]:
    """An eval of many questions over a one-file store (each question finds it first)."""
    with svc.http() as http:
        store = ok(http.post("/v1/vector_stores", json={"name": "kill"}))
        file_id = ok(
            http.post(
                "/v1/files",
                files={"file": ("tides.txt", b"Tide tables give high and low water times.")},
                data={"purpose": "assistants"},
            )
        )["id"]
        attached = ok(
            http.post(f"/v1/vector_stores/{store['id']}/files", json={"file_id": file_id})
        )
        wait_job(svc, attached["job_id"])
        items = [
            {"question": f"question {i} about tides", "expected_filenames": ["tides.txt"]}
            for i in range(QUESTIONS)
        ]
        evaluation = ok(
            http.post(
                "/v1/evals",
                json={
                    "data_source_config": {"type": "items", "items": items},
                    "vector_store_id": store["id"],
                },
            )
        )
    return {"store_id": store["id"], "eval_id": evaluation["id"]}


def test_cancelling_an_eval_run_stops_it_at_a_checkpoint(
    svc: Service, big_eval: dict[str, str]
) -> None:
    base = f"/v1/evals/{big_eval['eval_id']}/runs"
    with svc.http() as http:
        run = ok(http.post(base))
        wait_job(svc, run["job_id"], until=lambda j: j["progress_done"] >= 25, timeout_s=300)
        ok(http.post(f"{base}/{run['id']}"))  # OpenAI's cancel
        final = wait_job(svc, run["job_id"], timeout_s=300)
        assert final["status"] == "cancelled", final
        assert ok(http.get(f"{base}/{run['id']}"))["status"] == "canceled"
        with svc.db() as db:
            written = db.execute(
                "SELECT count(*) AS n FROM eval_run_items WHERE run_id = %s", [run["id"]]
            ).fetchone()
        assert written is not None and 0 < written["n"] < QUESTIONS
        assert written["n"] == final["progress_done"]  # items and progress move together


def test_an_eval_run_resumes_after_its_worker_is_killed(
    svc: Service, big_eval: dict[str, str]
) -> None:
    evaluation = {"id": big_eval["eval_id"]}
    with svc.http() as http:
        run = ok(http.post(f"/v1/evals/{evaluation['id']}/runs", json={}))
        busy = wait_job(
            svc,
            run["job_id"],
            until=lambda j: j["status"] == "running" and j["progress_done"] >= 25,
            timeout_s=300,
        )
        assert busy["progress_done"] < QUESTIONS, "the run ended before its worker was killed"
        kill9(worker_of(svc, busy))
        svc.start_worker()
        final = wait_job(svc, run["job_id"], timeout_s=600)
        assert final["status"] == "succeeded", final
        assert final["attempts"] == 2
        assert "worker lost" in str(final["attempt_log"])
        with svc.db() as db:
            rows = db.execute(
                "SELECT count(*) AS n, count(DISTINCT item_no) AS d FROM eval_run_items "
                "WHERE run_id = %s",
                [run["id"]],
            ).fetchone()
        assert rows == {"n": QUESTIONS, "d": QUESTIONS}
        done = ok(http.get(f"/v1/evals/{evaluation['id']}/runs/{run['id']}"))
        assert done["result_counts"]["total"] == QUESTIONS
        assert done["per_testing_criteria_results"][0]["metrics"]["hit_at_1"] == pytest.approx(1.0)


def test_a_sync_finishes_after_its_worker_is_killed(svc: Service, roots: Path) -> None:
    folder = roots / "reports"
    folder.mkdir()
    for i in range(6):
        (folder / f"report-{i}.txt").write_text(generated_text(40, seed=i))
    with svc.http() as http:
        store = ok(http.post("/v1/vector_stores", json={"name": "synced"}))
        schedule = ok(
            http.post(
                "/v1/schedules",
                json={
                    "kind": "source_sync",
                    "cron": "@daily",
                    "params": {"vector_store_id": store["id"], "source": str(folder)},
                },
            )
        )
        started = ok(http.post(f"/v1/schedules/{schedule['id']}/run"))
        # Killed once the sync waits for its files: their ingest jobs die with the worker.
        wait_job(svc, started["id"], until=lambda j: j["stage"] == "ingesting", timeout_s=300)
        kill9(next(p for p in svc.workers if p.poll() is None))
        svc.start_worker()
        final = wait_job(svc, started["id"], timeout_s=600)
        assert final["status"] == "succeeded", final
        assert final["result"]["counts"]["added"] == 6 and final["result"]["counts"]["failed"] == 0
        files = store_files(http, store["id"])
        assert sorted(f["attributes"]["source"] for f in files) == [
            f"report-{i}.txt" for i in range(6)
        ]
        assert {f["status"] for f in files} == {"completed"}
        assert job(svc, started["id"])["progress_done"] == 6
