"""Queue overhead: jobs per second through prepshelf's job machinery, and the latency it adds.

What is measured is the fixed cost every file pays besides the real work: the jobs row and
vector_store_files row written with the queue message in one transaction (`jobs/enqueue.py`
attach_files, as the file-batch route calls it), procrastinate handing the job to the worker,
and `jobs/ingest.py` run_ingest (claim, stage changes with their job events, the parse
sandbox round trip, chunk rows, the embedding checkpoint, finish, metrics). Each file is one
line of text and the embedder is the project's FakeEmbedder (no model: a hash of the word
pieces), so what remains is machinery. Beside it, in the same run and the same way, a raw
procrastinate no-op task: the floor any procrastinate-based queue pays.

Why in-process and a fake embedder: the worker is prepshelf's own `jobs/worker.py`
run_worker (its sub-workers, concurrency, pool, sandbox) running as a task of this process,
with only `build_embedder` replaced, so nothing is copied or simplified; subtracting a real
model's time instead would bury a few milliseconds under the model's noise. Enqueueing runs
before the worker is busy (throughput) or while it waits (latency), so the two barely
compete for the event loop.

Two modes, both for prepshelf and for the raw no-op:
- throughput: N jobs queued in one transaction, drained by one worker (prepshelf's
  ingest concurrency for both); jobs/s = N / (last job finished - first job started), read
  from procrastinate's own event timestamps.
- latency: M jobs one after the other (each queued when the previous one has finished);
  per job, from database timestamps: queue wait (deferred -> started), and for prepshelf
  the split of started -> finished into dispatch + claim, each stage (parsing, chunking,
  embedding, indexing from jobs.stage_durations) and the finish bookkeeping.

Run: `python bench/queue_overhead.py [--jobs 500] [--latency-jobs 100] [--json out.json]`
(a minute or two). `--profile FILE` writes a cProfile of the prepshelf throughput drain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import procrastinate
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from prepshelf.api.chunking import resolve_chunking
from prepshelf.embedded import EmbeddedPostgres
from prepshelf.ids import new_file_id, new_vector_store_id
from prepshelf.jobs import worker as worker_mod
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.jobs.queue import INGEST_QUEUE, SMALL_INGEST_QUEUE, build_app
from prepshelf.pipeline.embed import FakeEmbedder, default_model_dir
from prepshelf.pipeline.model_info import read_model_info
from prepshelf.settings import Settings
from prepshelf.store import files as files_db
from prepshelf.store import vector_stores as stores_db
from prepshelf.store.blob_factory import build_blob_store
from prepshelf.store.db import Pool, open_pool
from prepshelf.store.migrate import apply_migrations

PROJECT = "proj_bench"
NOOP_TASK, NOOP_QUEUE = "bench.noop", "bench_noop"
STAGES = ("parsing", "chunking", "embedding", "indexing")


# --- prepshelf side -----------------------------------------------------------------------


async def _make_files(pool: Pool, settings: Settings, count: int) -> list[str]:
    """Uploaded one-line text files, as the files route leaves them (blob + files row)."""
    blobs = build_blob_store(settings)
    ids = []
    async with pool.connection() as conn:
        for i in range(count):
            file_id = new_file_id()
            # Distinct bytes: an identical completed file would be copied, not ingested.
            data = f"Note {file_id}: the quick brown fox jumps over the lazy dog.\n".encode()
            writer = blobs.open_writer(f"files/{file_id}")
            writer.write(data)
            sha = writer.commit()
            await files_db.insert_file(
                conn,
                file_id=file_id,
                project_id=PROJECT,
                filename=f"note-{i}.txt",
                purpose="assistants",
                size=len(data),
                sha256=sha,
                blob_key=f"files/{file_id}",
            )
            ids.append(file_id)
    return ids


async def _make_store(pool: Pool) -> str:
    store_id = new_vector_store_id()
    async with pool.connection() as conn:
        await stores_db.create_store(
            conn,
            store_id=store_id,
            project_id=PROJECT,
            name="queue-bench",
            description=None,
            metadata=None,
            expires_after=None,
            embedding_model="fake-embedder",
            dimensions=384,
        )
    return store_id


async def _attach(
    queue: procrastinate.App, pool: Pool, store_id: str, file_ids: list[str], settings: Settings
) -> None:
    strategy = resolve_chunking(None, read_model_info(default_model_dir(), "fake-embedder"))
    items = [AttachItem(file_id=f, attributes={}, chunking_strategy=strategy) for f in file_ids]
    async with pool.connection() as conn, conn.transaction():
        await attach_files(
            queue,
            conn,
            project_id=PROJECT,
            store_id=store_id,
            items=items,
            file_batch_id=None,
            small_file_max_bytes=settings.small_file_max_bytes,
        )


@contextlib.asynccontextmanager
async def prepshelf_worker(settings: Settings, pool: Pool) -> AsyncIterator[None]:
    """`jobs/worker.py` run_worker on this loop, with the FakeEmbedder; stopped by SIGTERM
    as a process manager stops it (its own handler finishes the job in flight)."""
    real_build = worker_mod.build_embedder
    worker_mod.build_embedder = lambda s: FakeEmbedder()  # type: ignore[assignment]
    task = asyncio.create_task(worker_mod.run_worker(settings))
    try:
        await _until(partial(_live_workers, pool), timeout_s=60, task=task)
        yield
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # run_worker's loop handler takes it
        await task
        worker_mod.build_embedder = real_build


async def _live_workers(pool: Pool) -> bool:
    """All three sub-workers (ingest, batches, maintenance) registered."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) AS n FROM procrastinate_workers")
        ).fetchone()
    return bool(row and row["n"] >= 3)


async def _until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    task: asyncio.Task[Any] | None = None,
) -> None:
    """Poll on the bench's own pool (one connection, no new backend per poll)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if task is not None and task.done():
            task.result()  # raises the worker's error
            raise RuntimeError("the worker stopped")
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        await asyncio.sleep(0.05)


# --- raw procrastinate side ---------------------------------------------------------------


def _noop_app(url: str) -> procrastinate.App:
    """Bare procrastinate: its own connector with its defaults (not prepshelf's build_app,
    whose pools skip the per-checkout probe)."""
    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=4)
    app = procrastinate.App(connector=connector)

    @app.task(name=NOOP_TASK, queue=NOOP_QUEUE)
    async def noop() -> None:
        return None

    return app


async def _defer_noops(queue: procrastinate.App, pool: Pool, count: int) -> None:
    """Deferred on our connection inside a transaction, as attach_files defers."""
    async with pool.connection() as conn, conn.transaction():
        deferrer = queue.configure_task(NOOP_TASK, queue=NOOP_QUEUE, connection=conn)
        await deferrer.batch_defer_async(*({} for _ in range(count)))


@contextlib.asynccontextmanager
async def noop_worker(url: str, concurrency: int) -> AsyncIterator[None]:
    app = _noop_app(url)
    async with app.open_async():
        task = asyncio.create_task(
            app.run_worker_async(
                queues=[NOOP_QUEUE],
                concurrency=concurrency,
                name="bench-noop",
                install_signal_handlers=False,
            )
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- timelines ----------------------------------------------------------------------------

_TIMELINE = """
    SELECT pj.id,
           max(e.at) FILTER (WHERE e.type = 'deferred') AS deferred,
           max(e.at) FILTER (WHERE e.type = 'started') AS started,
           max(e.at) FILTER (WHERE e.type IN ('succeeded', 'failed')) AS done,
           bool_or(e.type = 'failed') AS failed
    FROM procrastinate_jobs pj JOIN procrastinate_events e ON e.job_id = pj.id
    WHERE pj.queue_name = %s AND pj.id > %s
    GROUP BY pj.id"""


def _queue_rows(url: str, queue: str, after: int) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(_TIMELINE, [queue, after]).fetchall()


async def _max_queue_id(pool: Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT coalesce(max(id), 0) AS n FROM procrastinate_jobs")
        row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def _all_done(pool: Pool, queue: str, after: int, count: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT count(*) AS n FROM procrastinate_jobs WHERE queue_name = %s AND id > %s
               AND status IN ('succeeded', 'failed')""",
            [queue, after],
        )
        row = await cur.fetchone()
    return bool(row and row["n"] >= count)


_FLUSH_WAIT_S = 11.0  # idle backends report their I/O statistics within 10 s (pgstat.c)


def _wal_counts(url: str) -> tuple[int, int]:
    """WAL fsyncs and committed transactions so far, cluster-wide (this bench's own server)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT (SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal'),
                      (SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database)"""
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _throughput(rows: list[dict[str, Any]]) -> tuple[float, float]:
    first = min(r["started"] for r in rows)
    last = max(r["done"] for r in rows)
    span = (last - first).total_seconds()
    return len(rows) / span, span


def _ms(delta: Any) -> float:
    return float(delta.total_seconds() * 1000)


def _job_rows(url: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            """SELECT queue_job_id, status, started_at, finished_at, stage_durations
               FROM jobs WHERE queue_job_id IS NOT NULL"""
        ).fetchall()
    return {r["queue_job_id"]: r for r in rows}


def _summary(values: list[float]) -> dict[str, float]:
    arr = np.array(values)
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
    }


def _breakdown(queue_rows: list[dict[str, Any]], jobs: dict[int, dict[str, Any]] | None) -> Any:
    parts: dict[str, list[float]] = {"queue wait": []}
    for r in queue_rows:
        parts["queue wait"].append(_ms(r["started"] - r["deferred"]))
        if jobs is None:
            parts.setdefault("run + finish", []).append(_ms(r["done"] - r["started"]))
        else:
            job = jobs[r["id"]]
            parts.setdefault("dispatch + claim", []).append(_ms(job["started_at"] - r["started"]))
            stages = job["stage_durations"] or {}
            for stage in STAGES:
                parts.setdefault(stage, []).append(1000 * float(stages.get(stage, 0.0)))
            in_stages = sum(float(stages.get(s, 0.0)) for s in STAGES) * 1000
            run = _ms(job["finished_at"] - job["started_at"])
            parts.setdefault("between stages", []).append(run - in_stages)
            parts.setdefault("finish", []).append(_ms(r["done"] - job["finished_at"]))
        parts.setdefault("total", []).append(_ms(r["done"] - r["deferred"]))
    return {name: _summary(values) for name, values in parts.items()}


async def _settled_counts(url: str) -> tuple[int, int]:
    await asyncio.sleep(_FLUSH_WAIT_S)
    return await asyncio.to_thread(_wal_counts, url)


def _per_job(before: tuple[int, int], after: tuple[int, int], jobs: int) -> dict[str, float]:
    """WAL flushes and commits per job in the latency run (the bench's own polling is
    read-only: its commits are counted, it flushes nothing)."""
    return {
        "wal_fsyncs_per_job": (after[0] - before[0]) / jobs,
        "commits_per_job": (after[1] - before[1]) / jobs,
    }


# --- driver -------------------------------------------------------------------------------


async def run(url: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(database_url=url, data_dir=data_dir, worker_nice=0)
    # One-line files go to the small files' lane (jobs/queue.py): measure that lane, and give
    # the raw reference the same concurrency.
    lane = SMALL_INGEST_QUEUE if settings.small_file_max_bytes > 0 else INGEST_QUEUE
    small = lane == SMALL_INGEST_QUEUE
    concurrency = settings.small_ingest_concurrency if small else settings.ingest_concurrency
    pool = await open_pool(url, min_size=1, max_size=2)
    queue = build_app(url, pool_size=2)  # the API's deferring app: only defers
    out: dict[str, Any] = {"jobs": args.jobs, "latency_jobs": args.latency_jobs}
    out["synchronous_commit"] = args.synchronous_commit
    out["vector_index"] = not args.without_vector_index
    out["concurrency"] = concurrency
    try:
        async with queue.open_async():
            store_id = await _make_store(pool)
            thr_files = await _make_files(pool, settings, args.jobs)
            lat_files = await _make_files(pool, settings, args.latency_jobs)

            # Raw procrastinate: throughput, then latency.
            async with noop_worker(url, concurrency):
                after = await _max_queue_id(pool)
                await _defer_noops(queue, pool, 20)  # warm-up
                await _until(partial(_all_done, pool, NOOP_QUEUE, after, 20), timeout_s=60)
                after = await _max_queue_id(pool)
                await _defer_noops(queue, pool, args.jobs)
                await _until(partial(_all_done, pool, NOOP_QUEUE, after, args.jobs), timeout_s=600)
                raw_thr = await asyncio.to_thread(_queue_rows, url, NOOP_QUEUE, after)
                after = await _max_queue_id(pool)
                before = await _settled_counts(url)
                for i in range(args.latency_jobs):
                    await _defer_noops(queue, pool, 1)
                    await _until(partial(_all_done, pool, NOOP_QUEUE, after, i + 1), timeout_s=60)
                raw_lat = await asyncio.to_thread(_queue_rows, url, NOOP_QUEUE, after)
                raw_io = _per_job(before, await _settled_counts(url), args.latency_jobs)
            print("raw procrastinate: done", file=sys.stderr)

            # prepshelf: the real worker, throughput then latency.
            async with prepshelf_worker(settings, pool):
                warm = await _make_files(pool, settings, 5)  # sandbox child, pools, caches
                after = await _max_queue_id(pool)
                await _attach(queue, pool, store_id, warm, settings)
                await _until(partial(_all_done, pool, lane, after, 5), timeout_s=120)
                after = await _max_queue_id(pool)
                if args.statements:
                    await asyncio.to_thread(_reset_statements, url)
                profiler = cProfile.Profile() if args.profile else None
                if profiler:
                    profiler.enable()
                await _attach(queue, pool, store_id, thr_files, settings)
                await _until(partial(_all_done, pool, lane, after, args.jobs), timeout_s=1200)
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                ps_thr = await asyncio.to_thread(_queue_rows, url, lane, after)
                if args.statements:
                    out["statements"] = await asyncio.to_thread(_statements, url, args.jobs)
                after = await _max_queue_id(pool)
                before = await _settled_counts(url)
                for i, file_id in enumerate(lat_files):
                    await _attach(queue, pool, store_id, [file_id], settings)
                    await _until(partial(_all_done, pool, lane, after, i + 1), timeout_s=120)
                ps_lat = await asyncio.to_thread(_queue_rows, url, lane, after)
                ps_io = _per_job(before, await _settled_counts(url), args.latency_jobs)
            print("prepshelf: done", file=sys.stderr)
    finally:
        await pool.close()
    jobs = await asyncio.to_thread(_job_rows, url)
    failed = sum(1 for r in ps_thr + ps_lat if r["failed"])
    with psycopg.connect(url) as conn:
        statuses: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1").fetchall()
        )
    out["prepshelf_job_statuses"] = statuses
    out["failed"] = failed
    out["sample_stage_durations"] = jobs[ps_lat[-1]["id"]]["stage_durations"]
    out["raw"] = {
        "jobs_per_s": _throughput(raw_thr)[0],
        "latency": _breakdown(raw_lat, None),
        **raw_io,
    }
    out["prepshelf"] = {
        "jobs_per_s": _throughput(ps_thr)[0],
        "latency": _breakdown(ps_lat, jobs),
        **ps_io,
    }
    return out


def _reset_statements(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")


def _statements(url: str, jobs: int) -> list[dict[str, Any]]:
    """Statements of the throughput drain (the bench's own polling included), per job."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            """SELECT round(calls::numeric / %s, 2) AS per_job,
                      round(total_exec_time::numeric / %s, 3) AS ms_per_job,
                      left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query
               FROM pg_stat_statements WHERE calls >= %s / 50
               ORDER BY total_exec_time DESC LIMIT 20""",
            [jobs, jobs, jobs],
        ).fetchall()


def report(out: dict[str, Any]) -> None:
    raw, ps = out["raw"], out["prepshelf"]
    print(
        f"\n{out['jobs']} jobs drained by one worker, concurrency {out['concurrency']}; "
        f"{out['latency_jobs']} jobs one at a time for latency; "
        f"synchronous_commit {out['synchronous_commit']}"
        + ("" if out["vector_index"] else "; WITHOUT the chunks' HNSW index (diagnostic)")
    )
    if out["failed"]:
        print(f"WARNING: {out['failed']} prepshelf jobs failed: {out['prepshelf_job_statuses']}")
    print(f"\n{'throughput':<28} {'jobs/s':>8} {'ms/job':>8}")
    for label, side in (("raw procrastinate no-op", raw), ("prepshelf ingest (1 line)", ps)):
        print(f"{label:<28} {side['jobs_per_s']:>8.1f} {1000 / side['jobs_per_s']:>8.1f}")
    print(f"{'ratio raw / prepshelf':<28} {raw['jobs_per_s'] / ps['jobs_per_s']:>8.1f}")
    print(f"\n{'latency (ms)':<28} {'p50':>8} {'p99':>8} {'mean':>8}")
    for name, s in raw["latency"].items():
        print(f"{'raw: ' + name:<28} {s['p50']:>8.1f} {s['p99']:>8.1f} {s['mean']:>8.1f}")
    for name, s in ps["latency"].items():
        print(f"{'prepshelf: ' + name:<28} {s['p50']:>8.1f} {s['p99']:>8.1f} {s['mean']:>8.1f}")
    print(
        f"\n{'per job (latency run)':<28} {'WAL fsyncs':>10} {'commits':>8}\n"
        f"{'raw procrastinate no-op':<28} {raw['wal_fsyncs_per_job']:>10.1f} "
        f"{raw['commits_per_job']:>8.1f}\n"
        f"{'prepshelf ingest (1 line)':<28} {ps['wal_fsyncs_per_job']:>10.1f} "
        f"{ps['commits_per_job']:>8.1f}"
    )
    added = {k: ps["latency"]["total"][k] - raw["latency"]["total"][k] for k in ("p50", "p99")}
    print(
        f"{'added by prepshelf (total)':<28} {added['p50']:>8.1f} {added['p99']:>8.1f} "
        f"{ps['latency']['total']['mean'] - raw['latency']['total']['mean']:>8.1f}"
    )
    if out.get("statements"):
        print(f"\n{'statements per job (throughput drain)':<40} {'calls':>6} {'ms':>7}")
        for row in out["statements"]:
            print(f"  {row['query']:<100} {row['per_job']:>6} {row['ms_per_job']:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs for throughput [500]")
    parser.add_argument("--latency-jobs", type=int, default=100, help="sequential jobs [100]")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="server setting for the run; off = commits do not wait for the disk [on]",
    )
    parser.add_argument("--profile", type=Path, help="cProfile of the prepshelf drain")
    parser.add_argument(
        "--without-vector-index",
        action="store_true",
        help="diagnostic: drop the chunks' HNSW index first, to split the index's own work"
        " from the machinery's",
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="load pg_stat_statements and print the drain's statements per job",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="queue-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "postgres")
        admin = server.start()
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE queue_bench")
            url = make_conninfo(admin, dbname="queue_bench")
            apply_migrations(url)
            if args.without_vector_index:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("DROP INDEX chunks_hnsw_384")
            if args.statements:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
                server.stop()
                admin = server.start()
            with psycopg.connect(admin, autocommit=True) as conn:
                # A diagnostic: `off` shows how much of each job is waiting for WAL flushes.
                conn.execute(f"ALTER SYSTEM SET synchronous_commit = {args.synchronous_commit}")
                conn.execute("SELECT pg_reload_conf()")
            out = asyncio.run(run(url, Path(tmp) / "data", args))
        finally:
            server.stop()
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
