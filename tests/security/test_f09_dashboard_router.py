"""Finding 9: the dashboard's hash router put whatever the address held into API paths, so
`/ui#/stores/..%2Fadmin%2Fkeys%3F` made the page call `GET /v1/admin/keys?` with the key.

Reproduced in Chromium with that link and other crafted ones: the page must make no API call
outside the view's own (vector stores, stores, jobs of the known id shapes) and say the
address is unknown; a real store link still works.
"""

from __future__ import annotations

from typing import Any

import pytest

from support.browser import chromium_page, needs_chromium
from support.service import Service
from support.tenants import Tenant, ok

pytestmark = needs_chromium

CRAFTED = [
    "#/stores/..%2Fadmin%2Fkeys%3F",
    "#/stores/..%2F..%2Fv1%2Fadmin%2Fkeys",
    "#/jobs/..%2Fadmin%2Fprojects",
    "#/jobs/job_x%2F..%2F..%2Fadmin%2Fkeys",
    "#/stores/vs_abc/extra",
    "#/stores/vs_abc?batch=..%2F..%2Fadmin%2Fkeys",
    "#/stores/vs_abc?after=..%2F..%2Fadmin",
    "#/stores/vs_abc?status=x%26limit%3D100",
    "#/stores/vs_abc?batch=vsfb_x&admin=1",
    "#/stores/%E0%A4%A",  # not even valid percent-encoding
    "#/admin/keys",
]


def _requests_made(base: str, key: str, fragments: list[str]) -> dict[str, list[str]]:
    made: dict[str, list[str]] = {}
    with chromium_page() as page:
        page.goto(f"{base}/ui")
        page.fill("#api-key", key)
        page.click("#key-save")
        page.wait_for_selector("h1")
        current: list[str] = []
        page.on("request", lambda r: current.append(r.url))
        for fragment in fragments:
            current.clear()
            page.goto(f"{base}/ui{fragment}")
            page.wait_for_timeout(700)
            made[fragment] = [u.removeprefix(base) for u in current if "/v1/" in u]
            made[fragment + " text"] = [page.inner_text("#view")]
    return made


def test_crafted_links_call_nothing_outside_the_view(
    svc: Service, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    base = f"http://127.0.0.1:{svc.port}"
    made = _requests_made(base, a.key, CRAFTED)
    for fragment in CRAFTED:
        assert not any("/admin" in u for u in made[fragment]), (fragment, made[fragment])
        assert made[fragment] == [], (fragment, made[fragment])
        assert "Unknown address" in made[fragment + " text"][0], fragment


def test_real_links_still_work(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    store: dict[str, Any] = ok(a.http.post("/v1/vector_stores", json={"name": "router"}))
    base = f"http://127.0.0.1:{svc.port}"
    made = _requests_made(base, a.key, [f"#/stores/{store['id']}?status=failed", "#/"])
    assert f"/v1/vector_stores/{store['id']}" in made[f"#/stores/{store['id']}?status=failed"]
    assert any(u.startswith("/v1/vector_stores?") for u in made["#/"])


@pytest.mark.parametrize("fragment", ["#/stores/..%2Fadmin%2Fkeys%3F"])
def test_the_reported_link_never_reaches_the_admin_api(
    svc: Service, tenants: tuple[Tenant, Tenant], fragment: str
) -> None:
    """The exact link of the report, opened fresh (the key already in the tab)."""
    a, _ = tenants
    base = f"http://127.0.0.1:{svc.port}"
    with chromium_page() as page:
        calls: list[str] = []
        page.on("request", lambda r: calls.append(r.url))
        page.goto(f"{base}/ui")
        page.evaluate("(k) => sessionStorage.setItem('prepshelf.key', k)", a.key)
        page.goto(f"{base}/ui{fragment}")
        page.reload()
        page.wait_for_timeout(1000)
    assert not [u for u in calls if "/v1/admin" in u], calls
