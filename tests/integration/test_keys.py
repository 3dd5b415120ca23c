"""Projects and API keys: admin API, `prepshelf keys` CLI, hashing, revocation, exposure."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.service import Service, base_env


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prepshelf", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def alpha(service: Service) -> dict[str, Any]:
    with service.http() as admin:
        project = admin.post("/v1/admin/projects", json={"name": "alpha"}).json()
        key = admin.post("/v1/admin/keys", json={"project_id": project["id"], "name": "ci"}).json()
    return {"project": project, "key": key}


def test_admin_creates_projects_and_keys(service: Service, alpha: dict[str, Any]) -> None:
    project, key = alpha["project"], alpha["key"]
    assert project["id"].startswith("proj_") and project["name"] == "alpha"
    assert key["id"].startswith("key_") and key["value"].startswith("sk-prepshelf-")
    assert key["project_id"] == project["id"] and key["is_admin"] is False
    with service.http() as admin:
        r = admin.post("/v1/admin/projects", json={"name": "alpha"})
        assert r.status_code == 409 and r.json()["error"]["param"] == "name"
        r = admin.post("/v1/admin/projects", json={"name": "../etc"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "name"
        r = admin.post("/v1/admin/keys", json={"project_id": "proj_nope"})
        assert r.status_code == 404 and r.json()["error"]["param"] == "project_id"
        listed = admin.get("/v1/admin/keys", params={"project_id": project["id"]}).json()
        assert [k["id"] for k in listed["data"]] == [key["id"]]
        assert "value" not in listed["data"][0]
        assert listed["data"][0]["redacted_value"].endswith("…")
        names = {p["name"] for p in admin.get("/v1/admin/projects").json()["data"]}
        assert {"default", "alpha"} <= names


def test_keys_are_stored_only_as_hashes(service: Service, alpha: dict[str, Any]) -> None:
    secret = alpha["key"]["value"]
    with service.db() as db:
        row = db.execute("SELECT * FROM api_keys WHERE id = %s", [alpha["key"]["id"]]).fetchone()
    assert row is not None
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(v) for v in row.values())


def test_project_key_works_but_cannot_administer(service: Service, alpha: dict[str, Any]) -> None:
    with service.http(alpha["key"]["value"]) as client:
        assert client.get("/v1/files").status_code == 200
        r = client.get("/v1/admin/keys")
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    with service.db() as db:
        row = db.execute(
            "SELECT last_used_at FROM api_keys WHERE id = %s", [alpha["key"]["id"]]
        ).fetchone()
    assert row is not None and row["last_used_at"] is not None


def test_failures_do_not_say_whether_a_key_exists(service: Service) -> None:
    with service.http() as admin:
        key = admin.post("/v1/admin/keys", json={"project_id": "default"}).json()
        assert admin.post(f"/v1/admin/keys/{key['id']}/revoke").json()["revoked_at"]
    bodies = []
    for header in (
        {"Authorization": f"Bearer {key['value']}"},  # revoked
        {"Authorization": "Bearer sk-prepshelf-unknown"},  # never existed
        {"Authorization": "Basic abc"},
        {},
    ):
        r = httpx.get(f"http://127.0.0.1:{service.port}/v1/files", headers=header)
        assert r.status_code == 401
        bodies.append(r.json())
    assert all(b == bodies[0] for b in bodies)


def test_cli_create_list_revoke(service: Service) -> None:
    env = base_env(PREPSHELF_DATABASE_URL=service.database_url)
    made = _cli("keys", "create", "--project", "beta", "--name", "from-cli", env=env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("sk-prepshelf-") and "created project beta" in made.stderr
    with service.http(secret) as client:
        assert client.get("/v1/vector_stores").status_code == 200
    listing = _cli("keys", "list", "--project", "beta", env=env)
    assert listing.returncode == 0 and "from-cli" in listing.stdout
    assert secret not in listing.stdout
    key_id = next(w for w in listing.stdout.split() if w.startswith("key_"))
    revoked = _cli("keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    # A revoke from outside the API process takes effect within the key cache's TTL.
    deadline = time.monotonic() + 15
    with service.http(secret) as client:
        while client.get("/v1/vector_stores").status_code != 401:
            assert time.monotonic() < deadline, "revoked key still accepted"
            time.sleep(0.5)
    assert _cli("keys", "revoke", "key_nope", env=env).returncode == 1


@pytest.mark.parametrize("role", ["api", "serve"])
def test_refuses_public_bind_without_keys(role: str, postgres: Any, tmp_path: Path) -> None:
    env = base_env(PREPSHELF_DATABASE_URL=postgres.new_database(), PREPSHELF_DATA_DIR=str(tmp_path))
    done = _cli(role, "--host", "0.0.0.0", "--port", "9", env=env)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in done.stderr
