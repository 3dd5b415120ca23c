"""What nightly work costs: source syncs of a folder of N small files (first, unchanged,
touched), and an evaluation run of Q questions with two search settings.

Starts the real service (embedded PostgreSQL, `prepshelf api`, one `prepshelf worker`;
tests/support) with the folder under PREPSHELF_SYNC_ROOTS, and times each run from "run now"
to its job's end (the job's own duration is shown too). An unchanged folder should cost its
listing only: no byte read, nothing copied, no ingest job; a touched folder (new mtimes, same
bytes) costs one read per file to hash it.

    python bench/nightly.py [--files 300] [--questions 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import TestPostgres
from support.runs import ok, wait_job
from support.service import Service

WORDS = ["harbour", "glacier", "orchard", "lantern", "quartz", "meadow", "signal", "willow"]


def _text(i: int) -> str:
    words = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(120))
    return f"Document {i} about topic {i % 17}. {words}."


def _timed_run(http: httpx.Client, path: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    job = ok(http.post(path))
    job_id = job["id"] if job.get("object") == "job" else job["job_id"]
    final = wait_job(http, job_id, timeout_s=3600)
    assert final["status"] == "succeeded", final
    return final, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, Any] = {"files": args.files, "questions": args.questions}
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        root = Path(tmp)
        folder = root / "source"
        folder.mkdir()
        for i in range(args.files):
            (folder / f"doc-{i:05d}.txt").write_text(_text(i))
        pg = TestPostgres(root / "pg").start()
        svc = Service(
            pg.new_database(),
            root / "svc",
            extra_env={"PREPSHELF_SYNC_ROOTS": str(folder), "PREPSHELF_RUN_POLL_INTERVAL_S": "1"},
        )
        try:
            svc.start()
            with svc.http() as http:
                store = ok(http.post("/v1/vector_stores", json={"name": "bench"}))
                schedule = ok(
                    http.post(
                        "/v1/schedules",
                        json={
                            "kind": "source_sync",
                            "cron": "@yearly",
                            "params": {"vector_store_id": store["id"], "source": str(folder)},
                        },
                    )
                )
                run_path = f"/v1/schedules/{schedule['id']}/run"
                for label in ("first", "unchanged", "touched"):
                    if label == "touched":
                        now = time.time_ns()
                        for path in folder.iterdir():
                            os.utime(path, ns=(now, now))
                    job, wall = _timed_run(http, run_path)
                    report = job["result"]
                    figures[f"sync_{label}"] = {
                        "wall_s": round(wall, 2),
                        "job_s": job["duration_s"],
                        "counts": report["counts"],
                        "bytes_read": report["bytes_read"],
                        "bytes_copied": report["bytes_copied"],
                    }
                items = [
                    {
                        "question": _text(i)[:80],
                        "expected_filenames": [f"doc-{i % args.files:05d}.txt"],
                    }
                    for i in range(args.questions)
                ]
                evaluation = ok(
                    http.post(
                        "/v1/evals",
                        json={
                            "data_source_config": {"type": "items", "items": items},
                            "vector_store_id": store["id"],
                            "testing_criteria": [
                                {"name": "vector"},
                                {
                                    "name": "hybrid",
                                    "ranking_options": {
                                        "hybrid_search": {"embedding_weight": 1, "text_weight": 1}
                                    },
                                },
                            ],
                        },
                    )
                )
                job, wall = _timed_run(http, f"/v1/evals/{evaluation['id']}/runs")
                run = ok(http.get(f"/v1/evals/{evaluation['id']}/runs/{job['eval_run_id']}"))
                figures["eval"] = {
                    "wall_s": round(wall, 2),
                    "job_s": job["duration_s"],
                    "questions_per_s": round(args.questions / job["duration_s"], 1),
                    "latency_ms": {
                        r["testing_criteria"]: r["latency_ms"]
                        for r in run["per_testing_criteria_results"]
                    },
                }
        finally:
            svc.stop()
            pg.stop()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.files} files, {args.questions} questions x 2 settings")
    for label in ("first", "unchanged", "touched"):
        f = figures[f"sync_{label}"]
        print(
            f"sync {label:9s} {f['wall_s']:7.2f} s (job {f['job_s']} s)"
            f"  read {f['bytes_read']:>9} B  copied {f['bytes_copied']:>9} B  {f['counts']}"
        )
    e = figures["eval"]
    print(
        f"eval run       {e['wall_s']:7.2f} s (job {e['job_s']} s)"
        f"  {e['questions_per_s']} questions/s"
    )
    for name, lat in e["latency_ms"].items():
        print(f"  {name:7s} latency ms p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}")


if __name__ == "__main__":
    main()
