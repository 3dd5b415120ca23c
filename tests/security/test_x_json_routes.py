"""Attacks beyond the report on every JSON route (taken from the live /openapi.json): huge
numbers, NaN and Infinity, huge strings, deep nesting, NUL and lone surrogates, bodies that
are not UTF-8; Idempotency-Key abuse; attribute and filter abuse. Never a 5xx, never a
traceback in the log.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from support.service import Service
from support.tenants import Tenant, api_log, ok, upload, wait_job

HOSTILE_VALUES: dict[str, bytes] = {
    "huge float": b"1e999999",
    "huge int": b"9" * 4000,
    "too many digits": b"9" * 5000,
    "NaN": b"NaN",
    "-Infinity": b"-Infinity",
    "huge string": json.dumps("s" * 900_000).encode(),
    "NUL": b'"a\\u0000b"',
    "lone surrogate": b'"\\ud800"',
    "deep list": b"[" * 3000 + b"]" * 3000,
    "deep object": b'{"a":' * 3000 + b"1" + b"}" * 3000,
    "empty object": b"{}",
    "negative": b"-1",
}
RAW_BODIES: dict[str, bytes] = {
    "not UTF-8": b'{"name": "\xff\xfe"}',
    "UTF-16": json.dumps({"name": "x"}).encode("utf-16"),
    "truncated": b'{"name": ',
    "array": b"[]",
    "deep array": b"[" * 100_000,
    "nested 900": b'{"a":' * 900 + b"1" + b"}" * 900,
}


@pytest.fixture(scope="module")
def objects(svc: Service, tenants: tuple[Tenant, Tenant]) -> dict[str, str]:
    """Real ids for the path parameters, so that requests reach their route's own code."""
    a, _ = tenants
    file_id = upload(a.http, "json.txt", b"the tide rises twice a day")
    store = ok(a.http.post("/v1/vector_stores", json={"name": "json"}))["id"]
    attached = ok(a.http.post(f"/v1/vector_stores/{store}/files", json={"file_id": file_id}))
    wait_job(a.http, attached["job_id"])
    batch = ok(a.http.post(f"/v1/vector_stores/{store}/file_batches", json={"file_ids": [file_id]}))
    evaluation = ok(
        a.http.post(
            "/v1/evals",
            json={
                "data_source_config": {
                    "type": "items",
                    "items": [{"question": "tide", "expected_filenames": ["json.txt"]}],
                },
                "vector_store_id": store,
            },
        )
    )
    schedule = ok(
        a.http.post(
            "/v1/schedules",
            json={"kind": "eval_run", "cron": "@daily", "params": {"eval_id": evaluation["id"]}},
        )
    )
    return {
        "vector_store_id": store,
        "file_id": file_id,
        "batch_id": batch["id"],
        "job_id": attached["job_id"],
        "key_id": "key_nope",
        "project_id": a.project_id,
        "eval_id": evaluation["id"],
        "schedule_id": schedule["id"],
    }


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return dict(spec["components"]["schemas"][ref.rsplit("/", 1)[-1]])
    return schema


def _json_operations(svc: Service) -> list[tuple[str, str, list[str]]]:
    """(method, path template, top-level body fields) of every operation taking a JSON body."""
    spec = httpx.get(f"http://127.0.0.1:{svc.port}/openapi.json").json()
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            content = (op.get("requestBody") or {}).get("content") or {}
            if "application/json" not in content:
                continue
            schema = _resolve(content["application/json"].get("schema", {}), spec)
            fields = list(schema.get("properties", {})) or ["x"]
            found.append((method.upper(), path, fields))
    assert len(found) >= 10, found
    return found


def _call(
    svc: Service, key: str, method: str, path: str, body: bytes, **headers: str
) -> httpx.Response:
    with httpx.Client(base_url=f"http://127.0.0.1:{svc.port}", timeout=60) as http:
        return http.request(
            method,
            path,
            content=body,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                **headers,
            },
        )


def test_hostile_values_in_every_field_of_every_json_route(
    svc: Service, tenants: tuple[Tenant, Tenant], objects: dict[str, str]
) -> None:
    a, _ = tenants
    log_before = len(api_log(svc))
    failures = []
    calls = 0
    for method, template, fields in _json_operations(svc):
        path = template.format(**objects)
        key = svc.api_key if path.startswith("/v1/admin") else a.key
        for field in fields:
            for name, value in HOSTILE_VALUES.items():
                body = b'{"' + field.encode() + b'":' + value + b"}"
                r = _call(svc, key, method, path, body)
                calls += 1
                if r.status_code >= 500:
                    failures.append((method, template, field, name, r.status_code, r.text[:200]))
        for name, body in RAW_BODIES.items():
            r = _call(svc, key, method, path, body)
            calls += 1
            if r.status_code >= 500:
                failures.append((method, template, "-", name, r.status_code, r.text[:200]))
    assert not failures, failures
    grown = api_log(svc)[log_before:]
    assert "Traceback" not in grown, grown[-3000:]
    print(f"{calls} hostile JSON requests, no 5xx")


def test_idempotency_key_abuse(
    svc: Service, tenants: tuple[Tenant, Tenant], objects: dict[str, str]
) -> None:
    a, b = tenants
    body = json.dumps({"name": "idem"}).encode()
    for bad in ("k" * 300, "tab\there", "\x7f"):
        r = _call(svc, a.key, "POST", "/v1/vector_stores", body, **{"Idempotency-Key": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "Idempotency-Key", r.text
    deep = b'{"name": "x", "metadata": ' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"}"
    r = _call(svc, a.key, "POST", "/v1/vector_stores", deep, **{"Idempotency-Key": "deep-1"})
    assert r.status_code == 400, r.text
    first = _call(svc, a.key, "POST", "/v1/vector_stores", body, **{"Idempotency-Key": "same"})
    again = _call(svc, a.key, "POST", "/v1/vector_stores", body, **{"Idempotency-Key": "same"})
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"]
    other = json.dumps({"name": "other"}).encode()
    r = _call(svc, a.key, "POST", "/v1/vector_stores", other, **{"Idempotency-Key": "same"})
    assert r.status_code == 409
    # Keys are per project: B reusing A's key value learns nothing (no 409, no replay).
    r = _call(svc, b.key, "POST", "/v1/vector_stores", other, **{"Idempotency-Key": "same"})
    assert r.status_code == 200 and r.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in r.headers


def test_attribute_and_filter_abuse(
    svc: Service, tenants: tuple[Tenant, Tenant], objects: dict[str, str]
) -> None:
    a, _ = tenants
    store, file_id = objects["vector_store_id"], objects["file_id"]
    attrs = f"/v1/vector_stores/{store}/files/{file_id}"
    for attributes in (
        {f"k{i}": "v" for i in range(17)},
        {"k": "v" * 600},
        {"k" * 100: "v"},
        {"k": {"nested": "dict"}},
        {"k": ["list"]},
    ):
        r = a.http.post(attrs, json={"attributes": attributes})
        assert r.status_code == 400, (attributes, r.text)
    ok(a.http.post(attrs, json={"attributes": {"year": 2024, "tag": "a'b\"c;--"}}))
    search = f"/v1/vector_stores/{store}/search"
    for flt in (
        {"type": "eq", "key": "'; DROP TABLE chunks;--", "value": "x"},
        {"type": "eq", "key": "tag\u0000", "value": "x"},
        {"type": "gt", "key": "year", "value": 10**300},
        {"type": "lt", "key": "year", "value": -(10**300)},
        {"type": "eq", "key": "year", "value": 1.5e308},
        {"type": "in", "key": "year", "value": ["a", 1, 2.5]},
        {"type": "nin", "key": "k" * 10_000, "value": [1]},
        {"type": "and", "filters": [{"type": "eq"}] * 3},
        {"type": "or", "filters": [None, 1, "x"]},
    ):
        r = a.http.post(search, json={"query": "tide", "filters": flt})
        assert r.status_code in (200, 400), (flt, r.status_code, r.text[:300])
    for raw in (b"NaN", b"Infinity", b"1e999", b'"\\ud800"'):
        body = b'{"query": "tide", "filters": {"type": "gt", "key": "year", "value": ' + raw + b"}}"
        r = _call(svc, a.key, "POST", search, body)
        assert r.status_code in (200, 400), (raw, r.status_code, r.text[:300])
