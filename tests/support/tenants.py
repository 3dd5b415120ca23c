"""Projects, keys and small client helpers for tests that play several tenants."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from support.service import Service


@dataclass
class Tenant:
    project_id: str
    key: str
    key_id: str
    http: httpx.Client


def ok(response: httpx.Response) -> Any:
    assert response.is_success, (response.status_code, response.text)
    return response.json()


def new_tenant(svc: Service, name: str) -> Tenant:
    with svc.http() as admin:
        project = ok(admin.post("/v1/admin/projects", json={"name": name}))
        key = ok(admin.post("/v1/admin/keys", json={"project_id": project["id"]}))
    return Tenant(project["id"], key["value"], key["id"], svc.http(key["value"]))


def new_key(svc: Service, project_id: str) -> tuple[str, str]:
    """(key id, secret) of a fresh key of the project."""
    with svc.http() as admin:
        key = ok(admin.post("/v1/admin/keys", json={"project_id": project_id}))
    return key["id"], key["value"]


def upload(http: httpx.Client, name: str, data: bytes) -> str:
    body = ok(http.post("/v1/files", files={"file": (name, data)}, data={"purpose": "assistants"}))
    return str(body["id"])


def wait_job(http: httpx.Client, job_id: str, *, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = ok(http.get(f"/v1/jobs/{job_id}"))
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def api_log(svc: Service) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(svc.data_dir.glob("api-*.log")))
