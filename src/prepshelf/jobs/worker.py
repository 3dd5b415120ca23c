"""A worker process: ingest, batches and maintenance sub-workers on one event loop.

CPU work (parsing in a child process, chunking, embedding) runs in threads, so the loop keeps
beating heartbeats while a file is busy: a slow-but-alive job is never declared dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import procrastinate
import psycopg

from prepshelf.jobs import batch_embed, maintenance, prune_events, run_tasks
from prepshelf.jobs.fair_slots import FairSlots
from prepshelf.jobs.ingest import run_ingest
from prepshelf.jobs.model_queue import ModelQueue
from prepshelf.jobs.process_heartbeat import process_heartbeat
from prepshelf.jobs.queue import (
    BATCH_QUEUE,
    INGEST_QUEUE,
    INGEST_TASK,
    MAINTENANCE_QUEUE,
    SMALL_INGEST_QUEUE,
    build_app,
)
from prepshelf.jobs.resources import WorkerResources
from prepshelf.jobs.retry import RequeueStrategy
from prepshelf.jobs.runs import RUNS_QUEUE
from prepshelf.jobs.sweeper import sweep
from prepshelf.jobs.upstreams import UpstreamClients
from prepshelf.metrics import instrument_embedder
from prepshelf.pipeline.embed import LocalEmbedder, default_model_dir
from prepshelf.pipeline.embedders import build_embedder
from prepshelf.pipeline.sandbox import shutdown_sandbox
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.settings import Settings
from prepshelf.store.blob_factory import build_blob_store
from prepshelf.store.db import open_pool, wait_for_database_async
from prepshelf.upstream_config import load_upstreams

log = logging.getLogger(__name__)

# One procrastinate sub-worker per queue in each worker process.
SUB_WORKER_QUEUES = (
    INGEST_QUEUE,
    SMALL_INGEST_QUEUE,
    BATCH_QUEUE,
    RUNS_QUEUE,
    MAINTENANCE_QUEUE,
)
_DB_WAIT_S = 300.0  # how long a worker waits for a lost database before giving up
_MAX_QUICK_RESTARTS = 10


def _register_tasks(app: procrastinate.App, res: WorkerResources) -> None:
    @app.task(name=INGEST_TASK, queue=INGEST_QUEUE, retry=RequeueStrategy())
    async def ingest_file(job_id: str) -> None:
        await run_ingest(res, job_id)

    every = max(1, min(59, res.settings.sweep_interval_s))

    # --- more tasks: each feature registers its tasks with one call per line below ---
    maintenance.register(app, res)
    prune_events.register(app, res)
    batch_embed.register(app, res)
    run_tasks.register(app, res)

    @app.periodic(cron=f"* * * * * */{every}", periodic_id="sweep")
    @app.task(name="prepshelf.sweep", queue=MAINTENANCE_QUEUE, queueing_lock="prepshelf.sweep")
    async def sweep_stalled(timestamp: int) -> None:
        await sweep(app, res.pool, res.settings)


async def run_worker(settings: Settings) -> None:
    assert settings.database_url, "the worker needs PREPSHELF_DATABASE_URL"
    # Workers compute; the front desk must stay responsive on the same machine.
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    await wait_for_database_async(settings.database_url)
    model_dir = settings.model_dir or default_model_dir()
    embedder = build_embedder(settings)
    # Load the model and tokenizer before taking work, so the first job pays nothing.
    if isinstance(embedder, LocalEmbedder):
        await asyncio.to_thread(embedder.embed, ["warm-up"])
    load_tokenizer(Path(model_dir))
    upstream_config = load_upstreams(settings)
    # An upstream batch slice records answers and asks the shared limits concurrently.
    # Jobs in flight each write now and then; an upstream batch slice records answers and
    # asks the shared limits concurrently.
    pool = await open_pool(
        settings.database_url,
        min_size=1,
        # Small files hold a connection only for their few short statements: a quarter of
        # their lane's slots is room enough.
        max_size=max(
            8 if upstream_config.upstreams else 4,
            settings.ingest_concurrency + 2 + settings.small_ingest_concurrency // 4,
        ),
    )
    worker_name = f"{socket.gethostname()}:{os.getpid()}"
    upstreams = (
        UpstreamClients.build(upstream_config, pool=pool, settings=settings, holder=worker_name)
        if upstream_config.upstreams
        else None
    )
    app = build_app(
        settings.database_url,
        update_heartbeat_interval=settings.heartbeat_interval_s,
        stalled_worker_timeout=settings.stall_timeout_s,
        shutdown_graceful_timeout=settings.shutdown_grace_s,
    )
    instrumented = instrument_embedder(embedder)  # counts calls, errors, time
    # A remote vendor takes calls from several jobs at once; a local model is one CPU, and
    # the jobs in flight share its calls.
    local = settings.embedder == "local"
    model_lock: contextlib.AbstractContextManager[Any] = (
        threading.Lock() if local else contextlib.nullcontext()
    )
    res = WorkerResources(
        settings=settings,
        pool=pool,
        blobs=build_blob_store(settings),
        embedder=instrumented,
        model_dir=Path(model_dir),
        worker_name=worker_name,
        model_lock=model_lock,
        upstreams=upstreams,
        app=app,
        model_queue=(
            ModelQueue(instrumented, max_texts=settings.embed_call_max_texts, lock=model_lock)
            if local
            else None
        ),
        parse_slots=FairSlots(settings.parse_concurrency),
    )
    _register_tasks(app, res)
    try:
        async with (
            app.open_async(),
            process_heartbeat(
                pool,
                name=res.worker_name,
                sub_workers=len(SUB_WORKER_QUEUES),
                interval_s=settings.heartbeat_interval_s,
            ),
        ):
            await _run_until_stopped(app, res)
    finally:
        if upstreams is not None:
            await upstreams.aclose()
        await pool.close()
        shutdown_sandbox()


async def _run_until_stopped(app: procrastinate.App, res: WorkerResources) -> None:
    """Run the sub-workers; when they stop on their own (the database went away), wait for
    the database and start them again, so a PostgreSQL restart needs no outside supervisor.
    Bounded: a database gone longer than `_DB_WAIT_S`, or too many quick failures, ends the
    process with an error (a supervisor, if any, takes over from there)."""
    stopping = asyncio.Event()
    quick_failures = 0
    while True:
        started = time.monotonic()
        lost = await _run_sub_workers(
            app,
            res.worker_name,
            stopping,
            concurrency={
                INGEST_QUEUE: res.settings.ingest_concurrency,
                SMALL_INGEST_QUEUE: res.settings.small_ingest_concurrency,
            },
        )
        if stopping.is_set():
            return
        quick_failures = quick_failures + 1 if time.monotonic() - started < 60 else 1
        if quick_failures > _MAX_QUICK_RESTARTS:
            raise RuntimeError(f"worker {res.worker_name}: sub-workers keep stopping: {lost!r}")
        delay = min(10.0, 0.5 * 2**quick_failures)
        log.warning(
            "worker %s: sub-workers stopped (%r); database lost? reconnecting in %.1f s",
            res.worker_name,
            lost,
            delay,
        )
        assert res.settings.database_url
        deadline = time.monotonic() + _DB_WAIT_S
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if stopping.is_set():
                return
            try:
                await wait_for_database_async(res.settings.database_url, timeout_s=1)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise


async def _run_sub_workers(
    app: procrastinate.App,
    name: str,
    stopping: asyncio.Event | None = None,
    *,
    concurrency: dict[str, int] | None = None,
) -> BaseException | None:
    """Run until a signal (returns None) or until a sub-worker stops by itself (returns why)."""
    stopping = stopping or asyncio.Event()
    subs = [
        asyncio.create_task(
            app.run_worker_async(
                queues=[queue],
                concurrency=(concurrency or {}).get(queue, 1),
                name=f"{name}/{queue}",
                install_signal_handlers=False,
            )
        )
        # Separate sub-workers: a long embedding batch never holds up file ingestion, small
        # files never wait for a slot held by a large one, and the sweeper runs while all are
        # busy. Several ingest jobs at once let one file parse while another is embedded (the
        # model itself runs one call at a time).
        for queue in SUB_WORKER_QUEUES
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("worker %s stopping: finishing the batch in flight, releasing its job", name)
        stopping.set()
        for task in subs:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("worker %s ready", name)
    done, _ = await asyncio.wait(subs, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.is_set():
        # One sub-worker stopped by itself (procrastinate stops when its listener loses the
        # database): stop the others too, handing their jobs back, and report why.
        for task in subs:
            task.cancel()
    results = await asyncio.gather(*subs, return_exceptions=True)
    if stopping.is_set():
        return None
    return next(
        (
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ),
        RuntimeError(f"{len(done)} sub-worker(s) stopped by themselves"),
    )
