"""/metrics: Prometheus text exposition. No auth, so it exposes aggregates only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from prepshelf.api.metrics import MetricsPage

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    page: MetricsPage = request.app.state.metrics_page
    return Response(await page.text(request.app.state.pool), media_type=CONTENT_TYPE_LATEST)
