"""create_app: the front desk, with per-process resources built once in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from prepshelf import __version__
from prepshelf.api.auth import KeyRing
from prepshelf.api.errors import install_error_handlers
from prepshelf.api.query_embedder import QueryEmbedder
from prepshelf.api.routes import file_batches, files, health, jobs, store_files, vector_stores
from prepshelf.jobs.queue import build_app
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.model_info import read_model_info
from prepshelf.settings import Settings
from prepshelf.store.blobs import LocalBlobStore
from prepshelf.store.db import open_pool, wait_for_database_async


def create_app(settings: Settings) -> FastAPI:
    if not settings.api_keys:
        raise ValueError("no API keys configured: set PREPSHELF_API_KEYS")
    database_url = settings.database_url
    if not database_url:
        raise ValueError("the API needs PREPSHELF_DATABASE_URL")
    model_dir = Path(settings.model_dir or default_model_dir())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await wait_for_database_async(database_url)
        app.state.pool = await open_pool(database_url, max_size=settings.db_pool_size)
        queue = build_app(database_url, pool_size=2)
        app.state.queue = queue
        try:
            async with queue.open_async():
                yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="prepshelf", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api_keys)
    app.state.blobs = LocalBlobStore(settings.blob_dir)
    app.state.model_info = read_model_info(model_dir, settings.model_id)
    app.state.query_embedder = QueryEmbedder(model_dir, threads=1)
    install_error_handlers(app)
    for module in (health, files, vector_stores, store_files, file_batches, jobs):
        app.include_router(module.router)
    # --- more routers: add one include per line below, each helper its own line ---
    return app
