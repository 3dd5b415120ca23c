"""Warm the front desk in the background right after it starts listening, so the first
search is as fast as the tenth: load the query model (in its own thread) and, meanwhile,
prepare the routes, import what the first request would, and run the search path's database
work once on a pooled connection (a new PostgreSQL backend plans its first queries against
cold catalog caches). Nothing waits for this; a request that needs
the model before it is loaded waits for the load itself (`query_embedder.py`)."""

from __future__ import annotations

import asyncio
import logging

import anyio.to_thread
import numpy as np
import psycopg
from fastapi import FastAPI

from prepshelf.store import search as search_db
from prepshelf.store import vector_stores as stores_db

log = logging.getLogger(__name__)

_NO_STORE = "vs_warmup"  # matches no row: the queries run, plan and return nothing


def _match_every_route(app: FastAPI) -> None:
    """FastAPI prepares a router's routes on the first request that reaches it (tens of ms
    for a router of ten routes); matching any path once prepares them all."""
    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "headers": []}
    for route in app.router.routes:
        route.matches(scope)


async def warm_up(app: FastAPI) -> None:
    app.state.query_embedder.start_loading()  # its own thread; /readyz reports it
    _match_every_route(app)
    await anyio.to_thread.run_sync(lambda: None)  # imports anyio's backend, as routes do
    # Meanwhile (the model takes seconds): the database side, with any unit vector.
    dims = app.state.model_info.dimensions
    vector = np.full(dims, 1 / np.sqrt(dims), dtype=np.float32)
    try:
        async with app.state.pool.connection(timeout=10) as conn:
            await stores_db.get_store(conn, project_id="-", store_id=_NO_STORE)
            await search_db.search_chunks(
                conn,
                store_id=_NO_STORE,
                dimensions=dims,
                query_vector=vector,
                limit=1,
                filters=None,
                score_threshold=0.0,
                ef_search=app.state.settings.search_ef_search,
            )
    except (psycopg.Error, TimeoutError) as exc:
        log.info("search warm-up skipped: %s", exc)


def start(app: FastAPI) -> asyncio.Task[None]:
    return asyncio.create_task(warm_up(app), name="prepshelf-warm-up")
