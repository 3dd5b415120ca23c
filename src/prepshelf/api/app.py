"""create_app: the front desk, with per-process resources built once in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from prepshelf import __version__
from prepshelf.api import observe, warmup
from prepshelf.api.auth import KeyRing
from prepshelf.api.errors import UnhandledErrors, install_error_handlers
from prepshelf.api.events_hub import EventsHub
from prepshelf.api.gate import FrontGate
from prepshelf.api.metrics import MetricsPage
from prepshelf.api.openapi import install_openapi
from prepshelf.api.query_embedder import QueryEmbedder
from prepshelf.api.routes import admin as admin_routes
from prepshelf.api.routes import audit as audit_routes
from prepshelf.api.routes import batches as batches_routes
from prepshelf.api.routes import embeddings as embeddings_routes
from prepshelf.api.routes import evals as evals_routes
from prepshelf.api.routes import events as events_routes
from prepshelf.api.routes import file_batches, files, health, jobs, store_files, vector_stores
from prepshelf.api.routes import metrics as metrics_routes
from prepshelf.api.routes import models as models_routes
from prepshelf.api.routes import schedules as schedules_routes
from prepshelf.api.security_headers import SecurityHeaders
from prepshelf.jobs.queue import build_app
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.embedders import embedder_model_info, query_embedder_factory
from prepshelf.settings import Settings
from prepshelf.store.blob_factory import build_blob_store
from prepshelf.store.db import open_pool, wait_for_database_async
from prepshelf.upstream_config import load_upstreams
from prepshelf.web import routes as web_routes


def create_app(settings: Settings) -> FastAPI:
    # Keys come from PREPSHELF_API_KEYS and/or the api_keys table: `prepshelf api` checks.
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
        app.state.events_hub = EventsHub(database_url)
        await app.state.events_hub.start()
        warming = None
        try:
            async with queue.open_async():
                # Started, never awaited: the server listens while the model loads.
                warming = warmup.start(app) if settings.query_model_preload else None
                yield
        finally:
            if warming is not None:
                warming.cancel()
            app.state.query_embedder.close()
            await app.state.events_hub.stop()
            await app.state.pool.close()

    # No /docs or /redoc: FastAPI's pages load Swagger UI / ReDoc from a public CDN, and the
    # service must work (and stay inside its own CSP) with no internet. /openapi.json stays.
    app = FastAPI(
        title="prepshelf", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(
        settings.api_keys,
        ttl_s=settings.key_cache_ttl_s,
        lookups=settings.auth_lookup_concurrency,
    )
    app.state.metrics_page = MetricsPage(
        settings.public_cache_s, max_evals=settings.eval_metrics_max_evals
    )
    app.state.blobs = build_blob_store(settings)
    app.state.model_info = embedder_model_info(settings)
    # Validated again here (the CLI refuses to start first): routes list and route by it.
    app.state.upstreams = load_upstreams(settings)
    app.state.query_embedder = QueryEmbedder(
        model_dir,
        threads=1,
        factory=query_embedder_factory(settings),
        model_id=app.state.model_info.model_id,
    )
    install_error_handlers(app)
    for module in (health, files, vector_stores, store_files, file_batches, jobs):
        app.include_router(module.router)
    # --- more routers: add one include per line below, each helper its own line ---
    app.include_router(admin_routes.router)
    install_openapi(app)  # 4XX error bodies instead of FastAPI's unused 422 shape
    app.include_router(events_routes.router)
    app.include_router(web_routes.router)
    app.include_router(embeddings_routes.router)
    app.include_router(batches_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(models_routes.router)
    app.include_router(schedules_routes.router)
    app.include_router(evals_routes.router)
    # Middleware, outermost last: security headers on everything, a JSON 500 for bugs, then
    # log context / latency / audit, then the gate (key, limits, body) before any route.
    app.add_middleware(
        FrontGate,
        fastapi_app=app,
        # 300,000 token ids do not fit the general JSON limit; the route parses them in a thread.
        json_body_limits={"/v1/embeddings": settings.embeddings_max_body_bytes},
    )
    observe.install(app)  # log context, request latency, audit rows after the response
    app.add_middleware(UnhandledErrors)
    app.add_middleware(SecurityHeaders)
    return app
