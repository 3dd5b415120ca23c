"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from prepshelf.store import workers as workers_db

# The queues each `prepshelf worker` process consumes, one sub-worker each (written out here so
# the front desk does not import the worker; tests/unit/test_health_wording.py keeps it true).
QUEUES_CONSUMED = ("ingest", "ingest_small", "batches", "runs", "maintenance")

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers; also says whether any worker process is alive to do
    work, and whether the query model (searches, /v1/embeddings) is loaded."""
    settings = request.app.state.settings
    window = settings.stall_timeout_s
    try:
        async with request.app.state.pool.connection(timeout=5) as conn:
            counts = await workers_db.live_counts(conn, within_s=window)
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
    body = {
        "status": "ok",
        "database": "ok",
        "live_workers": counts.processes,
        "live_sub_workers": counts.sub_workers,
        "workers_counted": (
            f"live_workers: `prepshelf worker` processes with a heartbeat in the last "
            f"{window:g} s; live_sub_workers: their queue consumers beating in that time, one "
            f"per queue ({', '.join(QUEUES_CONSUMED)}), {counts.sub_workers_declared} declared "
            "by the live processes"
        ),
        "queue_depth": counts.queue_depth,
        "query_model": request.app.state.query_embedder.status(),
    }
    if not counts.processes:
        body["warning"] = "no live worker: queued jobs will wait until a worker starts"
    return JSONResponse(body)
