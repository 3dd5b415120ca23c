"""The first search after the API starts, against the tenth.

Starts the real service (embedded PostgreSQL, `prepshelf api`, one `prepshelf worker`; tests/
support), ingests a few documents once, then restarts the API process `--reps` times for each
mode and times searches through HTTP:

- `preload` (the default, PREPSHELF_QUERY_MODEL_PRELOAD=true): the API loads its query model in
  a background thread right after it starts listening;
- `lazy` (PREPSHELF_QUERY_MODEL_PRELOAD=false, the behaviour before): the first search loads it.

For each restart: `listen` = spawn until /healthz answers; `ready` = spawn until /readyz says
the query model is loaded (preload only); `first@listen` = the first search sent the moment the
API answers (it waits for the load still in progress: no request fails); `first` and `tenth` =
searches 1 and 10 sent once the API is ready (preload: model loaded; lazy: /healthz answers).
Target (issue #13): `first` within 1.5x `tenth` with preload, where lazy pays the model load.

    python bench/first_search.py [--reps 3] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import TestPostgres
from support.service import Service, stop_processes

QUERIES = [
    "how are decisions made in the project",
    "parental leave policy",
    "who can merge pull requests",
    "what is a fenced code block",
    "lorem ipsum dolor sit amet",
    "release schedule and versioning",
    "code of conduct enforcement",
    "how to report a security issue",
    "maintainers and their roles",
    "voting on proposals",
]
DOCS = {
    "governance.md": (
        "# Project governance\n\nDecisions are made by lazy consensus among maintainers. "
        "Maintainers may merge pull requests after one approving review. Proposals that "
        "change the roadmap are put to a vote; a simple majority of maintainers decides.\n"
    ),
    "policy.md": (
        "# Parental leave\n\nEmployees may take sixteen weeks of paid parental leave after "
        "the birth or adoption of a child. Requests go to the team lead four weeks ahead.\n"
    ),
    "security.md": (
        "# Security\n\nReport a vulnerability privately to the security team; do not open a "
        "public issue. Releases follow semantic versioning on a six-week schedule.\n"
    ),
}


def _wait(url: str, ok: Any, timeout_s: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            response = httpx.get(url, timeout=5)
            if ok(response):
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} not ready in {timeout_s} s")


def _search(http: httpx.Client, store_id: str, query: str) -> float:
    started = time.monotonic()
    response = http.post(
        f"/v1/vector_stores/{store_id}/search", json={"query": query, "max_num_results": 3}
    )
    response.raise_for_status()
    return time.monotonic() - started


def _restart(svc: Service, *, preload: bool, store_id: str) -> dict[str, float]:
    stop_processes([svc.api])
    svc.env["PREPSHELF_QUERY_MODEL_PRELOAD"] = "true" if preload else "false"
    base = f"http://127.0.0.1:{svc.port}"
    spawned = time.monotonic()
    svc.api = svc._spawn("api")
    listening = _wait(f"{base}/healthz", lambda r: r.status_code == 200)
    row = {"listen": listening - spawned}
    with svc.http() as http:
        if preload:
            # A search sent the moment the API answers: waits for the load under way.
            row["first@listen"] = _search(http, store_id, QUERIES[-1])
            stop_processes([svc.api])
            spawned = time.monotonic()
            svc.api = svc._spawn("api")
            _wait(f"{base}/healthz", lambda r: r.status_code == 200)
            ready = _wait(
                f"{base}/readyz",
                lambda r: r.json().get("query_model", {}).get("status") == "ready",
            )
            row["ready"] = ready - spawned
        times = [_search(http, store_id, q) for q in QUERIES]
    row["first"], row["tenth"] = times[0], times[9]
    if not preload:
        row["first@listen"] = times[0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-search-") as tmp:
        pg = TestPostgres(Path(tmp) / "pg").start()
        svc = Service(pg.new_database(), Path(tmp) / "svc", workers=1)
        try:
            svc.start()
            client = svc.openai()
            store = client.vector_stores.create(name="first-search")
            files = [(name, io.BytesIO(text.encode())) for name, text in DOCS.items()]
            batch = client.vector_stores.file_batches.upload_and_poll(
                vector_store_id=store.id, files=files
            )
            assert batch.file_counts.completed == len(DOCS), batch
            results: dict[str, list[dict[str, float]]] = {"preload": [], "lazy": []}
            for _ in range(args.reps):
                for mode in ("lazy", "preload"):  # alternate: machine noise hits both alike
                    results[mode].append(
                        _restart(svc, preload=mode == "preload", store_id=store.id)
                    )
        finally:
            svc.stop()
            pg.stop()
    summary = {
        mode: {key: round(statistics.median(r[key] for r in rows), 3) for key in rows[0]}
        for mode, rows in results.items()
    }
    if args.json:
        print(json.dumps({"runs": results, "median": summary}, indent=2))
        return
    print(f"median of {args.reps} API restarts, seconds")
    print(f"{'mode':<8} {'listen':>7} {'ready':>7} {'first@listen':>13} {'first':>7} {'tenth':>7}")
    for mode, row in summary.items():
        print(
            f"{mode:<8} {row['listen']:>7.2f} {row.get('ready', float('nan')):>7.2f} "
            f"{row['first@listen']:>13.3f} {row['first']:>7.3f} {row['tenth']:>7.3f}"
        )
    pre = summary["preload"]
    ok = pre["first"] <= 1.5 * pre["tenth"]
    print(f"preload: first / tenth = {pre['first'] / pre['tenth']:.2f} (target <= 1.5: {ok})")


if __name__ == "__main__":
    main()
