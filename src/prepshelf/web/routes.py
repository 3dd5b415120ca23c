"""Serve the dashboard. The page needs no key; every data call it makes is an API call."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from prepshelf.errors import NotFoundError

router = APIRouter(include_in_schema=False)

_STATIC = Path(__file__).parent / "static"
_ASSETS = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "evals.js": "text/javascript",
    "evals.css": "text/css",
}
# The page is tiny and versioned with the package; revalidate so an upgrade shows at once.
_HEADERS = {"Cache-Control": "no-cache"}


@router.get("/ui")
async def dashboard() -> FileResponse:
    return FileResponse(_STATIC / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/ui/")
async def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui/{asset}")
async def asset(asset: str) -> FileResponse:
    if asset not in _ASSETS:
        raise NotFoundError(f"No such asset: {asset}")
    return FileResponse(_STATIC / asset, media_type=_ASSETS[asset], headers=_HEADERS)
