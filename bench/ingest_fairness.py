"""How long one small file of a project waits behind another project's backlog of larger files.

Starts the real service (embedded PostgreSQL, `prepshelf api`, one `prepshelf worker`, the
real model), two projects with a key each. Project A attaches `--backlog` larger text files
(each `--paragraphs` paragraphs, parsed in the sandbox, several checkpoints each) in one file
batch; once A's jobs are running, project B attaches one one-paragraph file. Printed per run:
B's seconds from its attach to its job's end, how many of A's files ended before it, and A's
whole time. Each run is one `--env` setting (default: `PREPSHELF_INGEST_CONCURRENCY=4` and
`=16`), the same inputs, one after the other, so their figures sit side by side.

    python bench/ingest_fairness.py [--backlog 64] [--paragraphs 200]
                                    [--run LABEL:PREPSHELF_X=v,PREPSHELF_Y=w ...]

What it checks (issue #18): more files in flight must not make another project's small file
wait for a backlog: parse slots and model calls go to the project holding the fewest
(`jobs/fair_slots.py`, `jobs/model_queue.py`).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import throwaway_service
from support.service import REAL_MODEL, Service
from support.tenants import new_tenant, ok

# Not small_files.py's generator: importing it puts this checkout's src/ first on sys.path,
# and a before/after run sets PYTHONPATH to another checkout.
_VOCABULARY = [
    "shelf",
    "file",
    "store",
    "chunk",
    "vector",
    "query",
    "answer",
    "index",
    "parse",
    "worker",
    "queue",
    "model",
    "page",
    "line",
    "project",
    "batch",
    "record",
    "report",
    "note",
    "ticket",
    "order",
    "issue",
    "release",
    "budget",
    "meeting",
    "summary",
]


def _texts(count: int, paragraphs: int, seed: int) -> list[str]:
    """Distinct texts (identical bytes would be copied, not embedded) of 60-word paragraphs."""
    rng = random.Random(seed)
    return [
        "\n\n".join(
            f"Paragraph {i}.{p}. " + " ".join(rng.choice(_VOCABULARY) for _ in range(60))
            for p in range(paragraphs)
        )
        for i in range(count)
    ]


def _attach(http: Any, store_id: str, texts: list[str], tag: str) -> str:
    ids = [
        ok(
            http.post(
                "/v1/files",
                files={"file": (f"{tag}-{i}.txt", io.BytesIO(t.encode()))},
                data={"purpose": "assistants"},
            )
        )["id"]
        for i, t in enumerate(texts)
    ]
    batch = ok(http.post(f"/v1/vector_stores/{store_id}/file_batches", json={"file_ids": ids}))
    return str(batch["id"])


def _jobs(svc: Service, project_id: str) -> list[dict[str, Any]]:
    with svc.db() as db:
        return db.execute(
            """SELECT status, created_at, started_at, finished_at, stage_durations
               FROM jobs WHERE project_id = %s""",
            [project_id],
        ).fetchall()


def run(label: str, env: dict[str, str], backlog: list[str], small: str) -> dict[str, Any]:
    with throwaway_service(f"fairness-{label}", extra_env={**REAL_MODEL, **env}) as svc:
        a, b = new_tenant(svc, "a"), new_tenant(svc, "b")
        store_a = ok(a.http.post("/v1/vector_stores", json={"name": "backlog"}))["id"]
        store_b = ok(b.http.post("/v1/vector_stores", json={"name": "one"}))["id"]
        started = time.monotonic()
        _attach(a.http, store_a, backlog, "big")
        while sum(j["started_at"] is not None for j in _jobs(svc, a.project_id)) < 4:
            time.sleep(0.1)
        time.sleep(2.0)  # A's files are parsing and embedding now
        attached = time.monotonic()
        _attach(b.http, store_b, [small], "small")
        deadline = attached + 1800
        while time.monotonic() < deadline:
            (job,) = _jobs(svc, b.project_id)
            if job["finished_at"] is not None:
                break
            time.sleep(0.05)
        small_s = time.monotonic() - attached
        a_before = sum(
            j["finished_at"] is not None and j["finished_at"] < job["finished_at"]
            for j in _jobs(svc, a.project_id)
        )
        while any(j["finished_at"] is None for j in _jobs(svc, a.project_id)):
            time.sleep(0.2)
        return {
            "run": label,
            "small_file_s": round(small_s, 2),
            "small_status": job["status"],
            # Where its time went: waiting to be claimed, then each stage it ran.
            "small_claimed_after_s": round(
                (job["started_at"] - job["created_at"]).total_seconds(), 2
            ),
            "small_stages_s": {k: round(v, 2) for k, v in job["stage_durations"].items()},
            "backlog_done_before_it": f"{a_before}/{len(backlog)}",
            "backlog_s": round(time.monotonic() - started, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=64)
    parser.add_argument("--paragraphs", type=int, default=200)
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        help="LABEL:PREPSHELF_X=v,PREPSHELF_Y=w (repeatable)",
    )
    args = parser.parse_args()
    runs = args.run or [
        "c4:PREPSHELF_INGEST_CONCURRENCY=4",
        "c16:PREPSHELF_INGEST_CONCURRENCY=16",
    ]
    backlog = _texts(args.backlog, args.paragraphs, seed=7)
    small = _texts(1, 1, seed=8)[0]
    print(
        f"backlog: {len(backlog)} files of {args.paragraphs} paragraphs "
        f"({sum(map(len, backlog)) // len(backlog)} bytes each); the small file: {len(small)} bytes"
    )
    for spec in runs:
        label, _, settings = spec.partition(":")
        env = dict(kv.split("=", 1) for kv in settings.split(",") if kv)
        print(json.dumps(run(label, env, backlog, small)), flush=True)


if __name__ == "__main__":
    main()
