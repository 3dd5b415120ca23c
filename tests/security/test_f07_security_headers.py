"""Finding 7: no CSP, framing protection, nosniff or Referrer-Policy anywhere, and `/docs`
loaded Swagger UI from a public CDN (unpinned, no integrity; no internet, no docs).

Checked on every kind of response (dashboard, assets, API JSON, errors from the gate and the
routes, downloads, event streams, probes, metrics); `/docs` is gone and nothing the server
sends points outside it; the dashboard runs under its strict CSP in a real browser.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from prepshelf.web import routes as web_routes
from support.browser import chromium_page, needs_chromium
from support.service import Service
from support.tenants import Tenant, ok, upload, wait_job

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _check(response: httpx.Response, *, dashboard: bool = False) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers)
    csp = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (response.url, csp)
    if dashboard:
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "http" not in csp
    else:
        assert "default-src 'none'" in csp, (response.url, csp)


def test_every_kind_of_response_carries_the_headers(
    svc: Service, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    base = f"http://127.0.0.1:{svc.port}"
    for path in ("/ui", "/ui/app.js", "/ui/app.css"):
        _check(httpx.get(base + path), dashboard=True)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/nowhere", "/v1/files"):
        _check(httpx.get(base + path))  # /v1/files without a key: the gate's 401
    file_id = upload(a.http, "page.html", b"<script>alert(1)</script>")
    for response in (
        a.http.get("/v1/files"),
        a.http.get(f"/v1/files/{file_id}"),
        a.http.get(f"/v1/files/{file_id}/content"),  # a download
        a.http.get("/v1/files/file-nope"),  # a route's 404
        a.http.post("/v1/vector_stores", json={"name": 5}),  # validation 400
        a.http.post("/v1/vector_stores", content=b"x", headers={"content-type": "multipart/x"}),
    ):
        _check(response)
    download = a.http.get(f"/v1/files/{file_id}/content")
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment")
    assert ok(a.http.get("/v1/files")) and a.http.get("/v1/files").headers["cache-control"] == (
        "no-store"
    )
    store = ok(a.http.post("/v1/vector_stores", json={"name": "headers"}))["id"]
    with a.http.stream("GET", f"/v1/events?vector_store_id={store}") as stream:
        _check(stream)
        assert stream.headers["cache-control"] == "no-cache"  # the stream's own, kept


def test_no_docs_page_and_nothing_from_elsewhere(svc: Service) -> None:
    base = f"http://127.0.0.1:{svc.port}"
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert httpx.get(base + path).status_code == 404
    assert httpx.get(base + "/openapi.json").json()["paths"]
    for asset in ("index.html", "app.js", "app.css"):
        text = (web_routes._STATIC / asset).read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), asset
        assert "cdn" not in text.lower(), asset


@needs_chromium
def test_dashboard_runs_under_its_csp(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    """No CSP violation while the dashboard shows a store whose file completed (its progress
    bar width is set through the CSSOM, which the policy allows)."""
    a, _ = tenants
    store = ok(a.http.post("/v1/vector_stores", json={"name": "csp store"}))["id"]
    file_id = upload(a.http, "csp.txt", b"Lighthouse keepers log the tides every night.")
    job = ok(a.http.post(f"/v1/vector_stores/{store}/files", json={"file_id": file_id}))
    assert wait_job(a.http, job["job_id"])["status"] == "succeeded"
    with chromium_page() as page:
        messages: list[Any] = []
        page.on("console", lambda m: messages.append(m.text))
        page.on("pageerror", lambda e: messages.append(str(e)))
        page.goto(f"http://127.0.0.1:{svc.port}/ui#/stores/{store}")
        page.fill("#api-key", a.key)
        page.click("#key-save")
        row = page.locator(f"tr.file[data-file-id='{file_id}']")
        row.wait_for(timeout=30_000)
        width = page.evaluate("() => document.querySelector('tr.file .fill').style.width")
        assert width == "100%"
    violations = [m for m in messages if "Content Security Policy" in m or "Refused to" in m]
    assert not violations, violations


@pytest.mark.parametrize("path", ["/ui", "/v1/files"])
def test_framing_is_refused(svc: Service, path: str) -> None:
    r = httpx.get(f"http://127.0.0.1:{svc.port}{path}")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
