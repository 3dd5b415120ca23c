"""Finding 4: ~420 nested `and` filters (11 KB) crashed `filter_sql` with a RecursionError
(500) and wrote 320 KB of log for one request.

Reproduced at several depths, up to past what the JSON parser itself takes, plus wide and
long filters: every one is a clean 400 naming `filters`, the log stays quiet (no traceback),
and filters within the limits still work.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.service import Service
from support.tenants import Tenant, api_log, ok

LEAF = {"type": "eq", "key": "year", "value": 2024}


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = LEAF
    for _ in range(depth - 1):
        node = {"type": "and", "filters": [node]}
    return node


def _nested_body(depth: int) -> bytes:
    """The search body as text: the client's own JSON encoder stops far short of 5,000."""
    opened = '{"type":"and","filters":[' * (depth - 1)
    return (
        '{"query":"x","filters":' + opened + json.dumps(LEAF) + "]}" * (depth - 1) + "}"
    ).encode()


@pytest.fixture(scope="module")
def store(tenants: tuple[Tenant, Tenant]) -> str:
    a, _ = tenants
    return str(ok(a.http.post("/v1/vector_stores", json={"name": "filters"}))["id"])


@pytest.mark.parametrize("depth", [9, 50, 420, 470, 479, 600, 5000])
def test_deep_filters_are_a_clean_400(
    svc: Service, tenants: tuple[Tenant, Tenant], store: str, depth: int
) -> None:
    a, _ = tenants
    log_before = len(api_log(svc))
    r = a.http.post(
        f"/v1/vector_stores/{store}/search",
        content=_nested_body(depth),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None or error["param"].startswith("filters"), error
    grown = api_log(svc)[log_before:]
    assert "Traceback" not in grown and len(grown) < 2000, grown[:2000]


def test_wide_and_long_filters_are_refused(tenants: tuple[Tenant, Tenant], store: str) -> None:
    a, _ = tenants
    search = f"/v1/vector_stores/{store}/search"
    wide = {"type": "or", "filters": [LEAF] * 10_000}
    r = a.http.post(search, json={"query": "x", "filters": wide})
    assert r.status_code == 400 and "at most" in r.json()["error"]["message"], r.text[:300]
    many = {"type": "in", "key": "year", "value": list(range(20_000))}
    r = a.http.post(search, json={"query": "x", "filters": many})
    assert r.status_code == 400 and r.json()["error"]["param"] == "filters.value", r.text[:300]


def test_filters_within_the_limits_work(tenants: tuple[Tenant, Tenant], store: str) -> None:
    a, _ = tenants
    search = f"/v1/vector_stores/{store}/search"
    ok(a.http.post(search, json={"query": "x", "filters": _nested(8)}))
    ok(a.http.post(search, json={"query": "x", "filters": {"type": "or", "filters": [LEAF] * 99}}))
    ok(
        a.http.post(
            search, json={"query": "x", "filters": {"type": "in", "key": "y", "value": [1] * 1000}}
        )
    )
