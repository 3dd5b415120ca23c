"""One tenant's burst against another tenant's status reads (issue #12, finding 10).

Starts the real API (embedded PostgreSQL, `prepshelf api`, no worker: uploads are not
attached, so only the front desk works). Two projects, a key each. Tenant B, in a process of
its own, reads one file's status back to back (GET /v1/files/{id}) for the whole run; tenant
A, after an idle phase, sends `--burst` small uploads at once, each retried after the
server's Retry-After when refused, or after a short pause when its connection drops (as the
SDK does), until all are in. Printed: B's read latency idle and during A's
burst (p50 / p99 / max), A's time to get every upload in and how many 429s it met.

    python bench/tenant_burst.py [--burst 1000] [--idle 5] [--limits on|off|both]
                                 [--env PREPSHELF_X=value ...] [--json PATH]

`--limits off` runs the same with PREPSHELF_KEY_MAX_CONCURRENT=0 and
PREPSHELF_RATE_LIMIT_PER_S=0 (the front desk before the per-key limits), `both` runs both.
Target (issue #12): B's reads during the burst stay within a few times their idle latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import TestPostgres
from support.service import Service
from support.tenants import new_tenant, ok

UNLIMITED = {"PREPSHELF_KEY_MAX_CONCURRENT": "0", "PREPSHELF_RATE_LIMIT_PER_S": "0"}


@dataclass
class Run:
    limits: str
    idle_ms: list[float] = field(default_factory=list)
    burst_ms: list[float] = field(default_factory=list)
    b_errors: int = 0
    a_uploads: int = 0
    a_refused: int = 0
    a_resets: int = 0
    a_seconds: float = 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _reader(base: str, key: str, file_id: str, stop: Any, out: Any) -> None:
    """Tenant B, in a process of its own (its latencies must not include the burst client's
    event loop): reads back to back until told to stop; sends (time, ms, status) rows."""
    rows = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as h:
        while not stop.is_set():
            started = time.perf_counter()
            status = h.get(f"/v1/files/{file_id}").status_code
            rows.append((time.time(), (time.perf_counter() - started) * 1e3, status))
    out.put(rows)


async def _burst(base: str, key: str, n: int) -> tuple[int, int, int]:
    refused = resets = 0
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=300
    ) as http:

        async def one(i: int) -> bool:
            nonlocal refused, resets
            for _ in range(60):
                try:
                    r = await http.post(
                        "/v1/files",
                        files={"file": (f"b{i}.txt", f"burst {i}".encode())},
                        data={"purpose": "assistants"},
                    )
                except httpx.TransportError:  # as the SDK does: retry a dropped connection
                    resets += 1
                    await asyncio.sleep(0.5 + random.random())
                    continue
                if r.status_code != 429:
                    return r.status_code == 200
                refused += 1
                wait = float(r.headers.get("retry-after", "1"))
                await asyncio.sleep(wait * (0.5 + random.random()))
            return False

        done = await asyncio.gather(*(one(i) for i in range(n)))
    return sum(done), refused, resets


def _measure(svc: Service, run: Run, *, burst: int, idle_s: float) -> None:
    base = f"http://127.0.0.1:{svc.port}"
    a, b = new_tenant(svc, "burst-a"), new_tenant(svc, "burst-b")
    probe = ok(b.http.post("/v1/files", files={"file": ("p.txt", b"p")}, data={"purpose": "batch"}))
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(base, b.key, probe["id"], stop, out))
    reader.start()
    time.sleep(idle_s)
    burst_from = time.time()
    started = time.perf_counter()
    run.a_uploads, run.a_refused, run.a_resets = asyncio.run(_burst(base, a.key, burst))
    run.a_seconds = time.perf_counter() - started
    burst_to = time.time()
    stop.set()
    rows = out.get(timeout=120)
    reader.join(timeout=30)
    for at, ms, status in rows:
        run.b_errors += status != 200
        if at < burst_from - 0.05:
            run.idle_ms.append(ms)
        elif at <= burst_to:
            run.burst_ms.append(ms)
    a.http.close()
    b.http.close()


def _one(limits: str, *, burst: int, idle_s: float, env: dict[str, str]) -> Run:
    root = Path(tempfile.mkdtemp(prefix="tenant-burst-"))
    pg = TestPostgres(root / "pg").start()
    svc = Service(
        pg.new_database(),
        root / "svc",
        workers=0,
        extra_env=env | (UNLIMITED if limits == "off" else {}),
    )
    run = Run(limits)
    try:
        svc.api = svc._spawn("api")
        svc.wait_ready(min_workers=0)
        svc.wait_query_model()  # the load after start is not the idle front desk
        _measure(svc, run, burst=burst, idle_s=idle_s)
    finally:
        svc.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=1000, help="uploads A sends at once")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle reads first")
    parser.add_argument("--limits", choices=["on", "off", "both"], default="both")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--env", action="append", default=[], help="PREPSHELF_X=value for the API (repeatable)"
    )
    args = parser.parse_args()
    modes = ["on", "off"] if args.limits == "both" else [args.limits]
    env = dict(item.split("=", 1) for item in args.env)
    runs = [_one(m, burst=args.burst, idle_s=args.idle, env=env) for m in modes]
    print(f"\nTenant B's status reads, idle and while tenant A sends {args.burst} uploads at once")
    print(
        f"{'limits':<7} {'idle p50':>9} {'p99':>7} {'burst p50':>10} {'p99':>7} {'max':>7} "
        f"{'p99 ratio':>9} {'B errors':>8} {'A done':>7} {'A 429s':>7} {'resets':>6} "
        f"{'A secs':>7}"
    )
    for r in runs:
        ratio = pct(r.burst_ms, 99) / pct(r.idle_ms, 99)
        print(
            f"{r.limits:<7} {pct(r.idle_ms, 50):>8.1f}ms {pct(r.idle_ms, 99):>6.1f}ms "
            f"{pct(r.burst_ms, 50):>9.1f}ms {pct(r.burst_ms, 99):>6.1f}ms "
            f"{max(r.burst_ms, default=float('nan')):>6.0f}ms {ratio:>9.1f} {r.b_errors:>8} "
            f"{r.a_uploads:>7} {r.a_refused:>7} {r.a_resets:>6} {r.a_seconds:>7.1f}"
        )
    if args.json:
        summary: list[dict[str, Any]] = []
        for r in runs:
            row = asdict(r)
            for name in ("idle_ms", "burst_ms"):
                values = row.pop(name)
                row[name] = {q: pct(values, q) for q in (50, 99)} | {"n": len(values)}
            summary.append(row)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
