"""/metrics: Prometheus text exposition. No auth, so it exposes aggregates only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from prepshelf.api.metrics import database_families, render
from prepshelf.api.metrics_evals import eval_families

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    async with request.app.state.pool.connection(timeout=5) as conn:
        families = await database_families(conn)
        limit = request.app.state.settings.eval_metrics_max_evals
        families += await eval_families(conn, limit=limit)
    return Response(render(families), media_type=CONTENT_TYPE_LATEST)
