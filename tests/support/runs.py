"""Helpers for tests of schedules, syncs and evals: wait for a job, read a store's files."""

from __future__ import annotations

import time
from typing import Any

import httpx

FINAL = ("succeeded", "failed", "cancelled")


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_job(http: httpx.Client, job_id: str, *, timeout_s: float = 300) -> dict[str, Any]:
    """Poll a job until it ends (bounded); returns its final object."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = ok(http.get(f"/v1/jobs/{job_id}"))
        if job["status"] in FINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not end: {job}"
        time.sleep(0.3)


def store_files(http: httpx.Client, store_id: str) -> list[dict[str, Any]]:
    """Every file of a store (all pages)."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100, "order": "asc"}
    while True:
        page = ok(http.get(f"/v1/vector_stores/{store_id}/files", params=params))
        found += page["data"]
        if not page["has_more"]:
            return found
        params["after"] = page["last_id"]


def run_cli(port: int, api_key: str, *args: str, timeout_s: float = 300) -> Any:
    """`prepshelf ARGS…` as a user runs it against the service (plain output: not a TTY)."""
    import subprocess
    import sys

    from support.service import base_env

    env = base_env(PREPSHELF_URL=f"http://127.0.0.1:{port}", PREPSHELF_API_KEY=api_key)
    return subprocess.run(
        [sys.executable, "-m", "prepshelf", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
