"""Two projects, two keys: every route answers 404 for the other project's ids, never a leak.

Both projects upload the same document, so identical chunks (and shared embedding-cache rows)
exist on both sides; search must still only ever return the caller's own chunks.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from support.service import Service

DOC = (
    "Lighthouses guide ships along rocky coasts. The Fresnel lens focuses the lamp into a "
    "beam visible for miles, and each light has its own flashing pattern."
)
MODEL = "all-MiniLM-L6-v2"


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return dict(r.json())


def _wait_batch(http: httpx.Client, vs: str, batch: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body = _ok(http.get(f"/v1/vector_stores/{vs}/file_batches/{batch}"))
        if body["status"] != "in_progress":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


def _tenant(service: Service, admin: httpx.Client, name: str) -> dict[str, Any]:
    project = _ok(admin.post("/v1/admin/projects", json={"name": name}))
    key = _ok(admin.post("/v1/admin/keys", json={"project_id": project["id"]}))["value"]
    http = service.http(key)
    file_id = _ok(
        http.post(
            "/v1/files",
            files={"file": ("lighthouse.txt", DOC.encode())},
            data={"purpose": "assistants"},
        )
    )["id"]
    other_id = _ok(
        http.post(
            "/v1/files",
            files={"file": ("spare.txt", b"a spare file nobody attaches")},
            data={"purpose": "assistants"},
        )
    )["id"]
    vs = _ok(http.post("/v1/vector_stores", json={"name": name}))["id"]
    batch = _ok(http.post(f"/v1/vector_stores/{vs}/file_batches", json={"file_ids": [file_id]}))
    assert _wait_batch(http, vs, batch["id"])["file_counts"]["completed"] == 1
    jobs = _ok(http.get("/v1/jobs", params={"vector_store_id": vs}))["data"]
    lines = json.dumps(
        {
            "custom_id": "1",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": "beam"},
        }
    )
    batch_file = _ok(
        http.post(
            "/v1/files", files={"file": ("in.jsonl", lines.encode())}, data={"purpose": "batch"}
        )
    )["id"]
    r = http.post(
        "/v1/batches",
        json={
            "input_file_id": batch_file,
            "endpoint": "/v1/embeddings",
            "completion_window": "24h",
        },
    )
    assert r.status_code in (200, 404), r.text  # 404: the batches feature is not installed
    return {
        "http": http,
        "project": project,
        "file": file_id,
        "spare": other_id,
        "vs": vs,
        "file_batch": batch["id"],
        "job": jobs[0]["id"],
        "batch": r.json()["id"] if r.status_code == 200 else None,
    }


@pytest.fixture(scope="module")
def tenants(service: Service) -> Any:
    with service.http() as admin:
        a = _tenant(service, admin, "iso-a")
        b = _tenant(service, admin, "iso-b")
    yield a, b
    a["http"].close()
    b["http"].close()


def _probes(mine: dict[str, Any], theirs: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(method, path, json body) of requests naming the other project's objects."""
    f, vs, fb, job = theirs["file"], theirs["vs"], theirs["file_batch"], theirs["job"]
    own_vs = mine["vs"]
    probes: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/files/{f}", None),
        ("GET", f"/v1/files/{f}/content", None),
        ("DELETE", f"/v1/files/{theirs['spare']}", None),
        ("GET", f"/v1/vector_stores/{vs}", None),
        ("POST", f"/v1/vector_stores/{vs}", {"name": "mine now"}),
        ("POST", f"/v1/vector_stores/{vs}/search", {"query": "lighthouse"}),
        # The other project's file attached to my own store, and mine to theirs.
        ("POST", f"/v1/vector_stores/{own_vs}/files", {"file_id": f}),
        ("POST", f"/v1/vector_stores/{vs}/files", {"file_id": mine["spare"]}),
        ("POST", f"/v1/vector_stores/{own_vs}/file_batches", {"file_ids": [f]}),
        ("POST", f"/v1/vector_stores/{vs}/file_batches", {"file_ids": [mine["spare"]]}),
        ("GET", f"/v1/vector_stores/{vs}/files", None),
        ("GET", f"/v1/vector_stores/{vs}/files/{f}", None),
        ("POST", f"/v1/vector_stores/{vs}/files/{f}", {"attributes": {"x": "y"}}),
        ("GET", f"/v1/vector_stores/{vs}/files/{f}/content", None),
        ("GET", f"/v1/vector_stores/{own_vs}/files/{f}", None),
        ("GET", f"/v1/vector_stores/{vs}/file_batches", None),
        ("GET", f"/v1/vector_stores/{vs}/file_batches/{fb}", None),
        ("GET", f"/v1/vector_stores/{own_vs}/file_batches/{fb}", None),
        ("POST", f"/v1/vector_stores/{vs}/file_batches/{fb}/cancel", None),
        ("GET", f"/v1/vector_stores/{vs}/file_batches/{fb}/files", None),
        ("GET", f"/v1/jobs/{job}", None),
        ("POST", f"/v1/jobs/{job}/cancel", None),
        ("POST", f"/v1/jobs/{job}/retry", None),
        ("GET", f"/v1/jobs/{job}/events", None),
        ("GET", f"/v1/events?vector_store_id={vs}", None),
        ("GET", f"/v1/events?batch_id={fb}", None),
        ("DELETE", f"/v1/vector_stores/{vs}/files/{f}", None),
        ("DELETE", f"/v1/vector_stores/{vs}", None),
    ]
    if theirs["batch"]:
        b = theirs["batch"]
        probes += [
            ("GET", f"/v1/batches/{b}", None),
            ("POST", f"/v1/batches/{b}/cancel", None),
            ("GET", f"/v1/events?batch_id={b}", None),
            (
                "POST",
                "/v1/batches",
                {"input_file_id": f, "endpoint": "/v1/embeddings", "completion_window": "24h"},
            ),
        ]
    return probes


def test_every_route_hides_the_other_project(tenants: Any) -> None:
    a, b = tenants
    for mine, theirs in ((b, a), (a, b)):
        for method, path, body in _probes(mine, theirs):
            r = mine["http"].request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            error = r.json()["error"]
            assert error["type"] == "invalid_request_error", (method, path, error)
            # The 404 names the id that was asked for, nothing of the object itself.
            assert DOC[:20] not in r.text and theirs["project"]["id"] not in r.text


def test_nothing_was_changed_by_the_probes(tenants: Any) -> None:
    a, b = tenants
    for t in (a, b):
        vs = _ok(t["http"].get(f"/v1/vector_stores/{t['vs']}"))
        assert vs["name"] == t["project"]["name"] and vs["file_counts"]["completed"] == 1
        _ok(t["http"].get(f"/v1/files/{t['spare']}"))
        assert _ok(t["http"].get(f"/v1/jobs/{t['job']}"))["status"] == "succeeded"


def test_lists_only_show_own_objects(tenants: Any) -> None:
    a, b = tenants
    for mine, theirs in ((a, b), (b, a)):
        http = mine["http"]
        files = {f["id"] for f in _ok(http.get("/v1/files", params={"limit": 100}))["data"]}
        assert mine["file"] in files and theirs["file"] not in files
        stores = {s["id"] for s in _ok(http.get("/v1/vector_stores"))["data"]}
        assert stores == {mine["vs"]}
        jobs = _ok(http.get("/v1/jobs", params={"limit": 100}))["data"]
        assert theirs["job"] not in {j["id"] for j in jobs}
        assert _ok(http.get("/v1/jobs", params={"vector_store_id": theirs["vs"]}))["data"] == []
        if mine["batch"]:
            batches = {x["id"] for x in _ok(http.get("/v1/batches"))["data"]}
            assert theirs["batch"] not in batches
        # The trail names the other project's store only in this project's own probes of it
        # (each refused with 404): never the other project's own activity.
        rows = _ok(http.get("/v1/audit", params={"object_id": theirs["vs"], "limit": 100}))
        assert all(
            r["project_id"] == mine["project"]["id"] and r["status_code"] == 404
            for r in rows["data"]
        ), rows["data"]
        # A cursor naming the other project's object is an unknown cursor, not a page of it.
        r = http.get("/v1/files", params={"after": theirs["file"]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "after"


def test_search_never_returns_the_other_projects_chunks(tenants: Any) -> None:
    a, b = tenants
    for mine, theirs in ((a, b), (b, a)):
        r = _ok(
            mine["http"].post(
                f"/v1/vector_stores/{mine['vs']}/search",
                json={"query": "Fresnel lens lighthouse beam", "max_num_results": 50},
            )
        )
        assert r["data"], r
        assert {hit["file_id"] for hit in r["data"]} == {mine["file"]}
        assert theirs["file"] not in json.dumps(r)
