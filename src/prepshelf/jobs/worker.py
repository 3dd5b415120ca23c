"""A worker process: one ingest sub-worker and one maintenance sub-worker on one event loop.

CPU work (parsing in a child process, chunking, embedding) runs in threads, so the loop keeps
beating heartbeats while a file is busy: a slow-but-alive job is never declared dead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path

import procrastinate

from prepshelf.jobs.ingest import WorkerResources, run_ingest
from prepshelf.jobs.queue import INGEST_QUEUE, INGEST_TASK, MAINTENANCE_QUEUE, build_app
from prepshelf.jobs.retry import RequeueStrategy
from prepshelf.jobs.sweeper import sweep
from prepshelf.pipeline.embed import LocalEmbedder, default_model_dir
from prepshelf.pipeline.sandbox import shutdown_sandbox
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.settings import Settings
from prepshelf.store.blobs import LocalBlobStore
from prepshelf.store.db import open_pool, wait_for_database_async

log = logging.getLogger(__name__)


def _register_tasks(app: procrastinate.App, res: WorkerResources) -> None:
    @app.task(name=INGEST_TASK, queue=INGEST_QUEUE, retry=RequeueStrategy())
    async def ingest_file(job_id: str) -> None:
        await run_ingest(res, job_id)

    every = max(1, min(59, res.settings.sweep_interval_s))

    # --- more tasks: each feature registers its tasks with one call per line below ---

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
    embedder = LocalEmbedder(
        model_dir, batch_size=settings.embed_batch_size, threads=settings.torch_threads
    )
    # Load the model and tokenizer before taking work, so the first job pays nothing.
    await asyncio.to_thread(embedder.embed, ["warm-up"])
    load_tokenizer(Path(model_dir))
    pool = await open_pool(settings.database_url, min_size=1, max_size=4)
    res = WorkerResources(
        settings=settings,
        pool=pool,
        blobs=LocalBlobStore(settings.blob_dir),
        embedder=embedder,
        model_dir=Path(model_dir),
        worker_name=f"{socket.gethostname()}:{os.getpid()}",
    )
    app = build_app(
        settings.database_url,
        update_heartbeat_interval=settings.heartbeat_interval_s,
        stalled_worker_timeout=settings.stall_timeout_s,
        shutdown_graceful_timeout=settings.shutdown_grace_s,
    )
    _register_tasks(app, res)
    try:
        async with app.open_async():
            await _run_sub_workers(app, res.worker_name)
    finally:
        await pool.close()
        shutdown_sandbox()


async def _run_sub_workers(app: procrastinate.App, name: str) -> None:
    subs = [
        asyncio.create_task(
            app.run_worker_async(
                queues=[INGEST_QUEUE],
                concurrency=1,
                name=f"{name}/ingest",
                install_signal_handlers=False,
            )
        ),
        asyncio.create_task(
            app.run_worker_async(
                queues=[MAINTENANCE_QUEUE],
                concurrency=1,
                name=f"{name}/maintenance",
                install_signal_handlers=False,
            )
        ),
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("worker %s stopping: finishing the batch in flight, releasing its job", name)
        for task in subs:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("worker %s ready", name)
    results = await asyncio.gather(*subs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
