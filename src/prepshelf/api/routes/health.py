"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers; also says whether any worker is alive to do work."""
    settings = request.app.state.settings
    try:
        async with request.app.state.pool.connection(timeout=5) as conn:
            row: dict[str, Any] | None = await (
                await conn.execute(
                    """SELECT
                     (SELECT count(*) FROM procrastinate_workers
                       WHERE last_heartbeat > now() - make_interval(secs => %s)) AS live_workers,
                     (SELECT count(*) FROM procrastinate_jobs
                       WHERE status = 'todo' AND queue_name = 'ingest') AS queue_depth""",
                    [settings.stall_timeout_s],
                )
            ).fetchone()
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
    assert row is not None
    # Sub-workers register separately (ingest + maintenance) per process.
    body = {
        "status": "ok",
        "database": "ok",
        "live_workers": int(row["live_workers"]),
        "queue_depth": int(row["queue_depth"]),
    }
    if not row["live_workers"]:
        body["warning"] = "no live worker: queued jobs will wait until a worker starts"
    return JSONResponse(body)
