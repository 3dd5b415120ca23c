"""How long a small /v1/batches batch waits behind another project's huge one (issue #16).

Starts the real service (embedded PostgreSQL, `prepshelf api`, one `prepshelf worker`: one
batch runs at a time), two projects with a key each. Project A submits a `--lines` embedding
batch (short inputs, the real model unless `--env PREPSHELF_EMBEDDER=fake`); once it is
in_progress, project B and project A each submit a 1-line batch. Printed for each: seconds
from creating both to its completion, and where A's big batch was at that moment.

Two runs side by side: `before` with PREPSHELF_BATCH_TURN_S=1e9 (a batch holds the worker
until it ends: the behaviour before fair share) and `after` with the default turn.
Target: the small batches finish within seconds while the big one still runs.

    python bench/batch_fair_share.py [--lines 30000] [--env PREPSHELF_X=value ...]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import throwaway_service
from support.service import REAL_MODEL
from support.tenants import new_tenant

MODEL = "all-MiniLM-L6-v2"


def _batch(client: openai.OpenAI, n: int, tag: str) -> Any:
    data = "".join(
        json.dumps(
            {
                "custom_id": f"{tag}-{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": MODEL, "input": f"{tag} record {i} about topic {i % 11}"},
            }
        )
        + "\n"
        for i in range(n)
    )
    f = client.files.create(file=("in.jsonl", io.BytesIO(data.encode())), purpose="batch")
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h"
    )


def _until(client: openai.OpenAI, batch_id: str, statuses: set[str], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        time.sleep(0.1)
    raise TimeoutError(f"{batch_id} not {statuses} after {timeout_s} s")


def run(label: str, lines: int, env: dict[str, str]) -> dict[str, Any]:
    with throwaway_service(f"fair-{label}", extra_env=env) as svc:
        clients = {}
        for name in ("a", "b"):
            tenant = new_tenant(svc, name)
            clients[name] = openai.OpenAI(base_url=svc.base_url, api_key=tenant.key)
        big = _batch(clients["a"], lines, "big")
        _until(clients["a"], big.id, {"in_progress"}, 600)
        result: dict[str, Any] = {"run": label}
        started = time.monotonic()
        smalls = {who: _batch(clients[who], 1, f"small-{who}") for who in ("b", "a")}
        for who, small in smalls.items():
            _until(clients[who], small.id, {"completed"}, 3600)
            waited = time.monotonic() - started
            state = clients["a"].batches.retrieve(big.id)
            done = state.request_counts.completed if state.request_counts else 0
            result[f"small_{who}_s"] = round(waited, 2)
            result[f"big_at_small_{who}"] = f"{state.status} {done}/{lines}"
        started = time.monotonic()
        _until(clients["a"], big.id, {"completed"}, 3600)
        result["big_rest_s"] = round(time.monotonic() - started, 1)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=30_000)
    parser.add_argument("--env", action="append", default=[], help="PREPSHELF_X=value")
    args = parser.parse_args()
    env = {**REAL_MODEL, **dict(e.split("=", 1) for e in args.env)}
    before = run("before", args.lines, {**env, "PREPSHELF_BATCH_TURN_S": "1e9"})
    after = run("after", args.lines, env)
    for r in (before, after):
        print(json.dumps(r))
    for who, project in (("b", "another project's"), ("a", "the same project's")):
        b, a = before[f"small_{who}_s"], after[f"small_{who}_s"]
        print(
            f"1-line batch of {project} behind a {args.lines}-line batch: "
            f"before {b:.1f} s, after {a:.1f} s ({b / max(a, 1e-9):.0f}x sooner)"
        )


if __name__ == "__main__":
    main()
