"""What the shared rate limit costs: admissions per second through the PostgreSQL log.

Starts an embedded PostgreSQL (tests/support), then for 1 and `--clients` concurrent callers
(each on its own connection, as worker processes would be) admits and finishes requests to one
upstream whose limits never bind, so the figure is the log's own overhead: one transaction
(advisory lock, clock, prune, window query, insert) plus the finishing update per request. It
also reports the same with `--window-entries` already in the window (a busy upstream: the
window query reads every entry of the last minute).

    python bench/upstream_admission.py [--requests 2000] [--clients 8] [--window-entries 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prepshelf.domain.admission import Admission
from prepshelf.domain.upstreams import RateLimits
from prepshelf.store import upstream_admissions as log
from support.postgres import TestPostgres

OPEN = RateLimits(rpm=10**9, tpm=10**12, max_concurrent=10**6)


async def _caller(url: str, upstream: str, count: int) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(count):
            verdict = await log.try_admit(
                conn,
                upstream=upstream,
                limits=OPEN,
                tokens=100,
                window_s=61.0,
                slot_s=60.0,
                holder="bench",
                poll_s=0.5,
            )
            assert isinstance(verdict, Admission)
            await log.finish(conn, admission_id=verdict.id, tokens=80)


async def _run(url: str, upstream: str, requests: int, clients: int) -> float:
    started = time.perf_counter()
    per = requests // clients
    await asyncio.gather(*(_caller(url, upstream, per) for _ in range(clients)))
    return per * clients / (time.perf_counter() - started)


async def _prefill(url: str, upstream: str, entries: int) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            """INSERT INTO upstream_admissions (upstream, admitted_at, tokens)
               SELECT %s, clock_timestamp() - make_interval(secs => i * 0.001), 50
                 FROM generate_series(1, %s) AS i""",
            [upstream, entries],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--window-entries", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = TestPostgres(Path(tmp)).start()
        try:
            url = pg.new_database()
            for clients in (1, args.clients):
                rate = asyncio.run(_run(url, f"empty-{clients}", args.requests, clients))
                print(f"{clients} caller(s), empty window: {rate:,.0f} admissions/s")
            asyncio.run(_prefill(url, "busy", args.window_entries))
            rate = asyncio.run(_run(url, "busy", args.requests, args.clients))
            print(
                f"{args.clients} caller(s), {args.window_entries:,} entries in the window: "
                f"{rate:,.0f} admissions/s"
            )
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
