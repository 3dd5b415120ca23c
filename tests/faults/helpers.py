"""Small helpers shared by the fault tests: upload, attach, wait for jobs, find workers."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

from support.service import Service


def upload(http: httpx.Client, data: bytes, name: str, **headers: str) -> httpx.Response:
    return http.post(
        "/v1/files",
        files={"file": (name, io.BytesIO(data), "text/plain")},
        data={"purpose": "assistants"},
        headers=headers,
    )


def attach(http: httpx.Client, store_id: str, file_id: str) -> str:
    """Attach a file to a store; return its job id."""
    resp = http.post(f"/v1/vector_stores/{store_id}/files", json={"file_id": file_id})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["job_id"])


def ingest_text(http: httpx.Client, store_id: str, text: str, name: str) -> tuple[str, str]:
    resp = upload(http, text.encode(), name)
    assert resp.status_code == 200, resp.text
    file_id = resp.json()["id"]
    return file_id, attach(http, store_id, file_id)


def job(svc: Service, job_id: str) -> dict[str, Any]:
    with svc.db() as db:
        row = db.execute("SELECT * FROM jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return row


def wait_job(
    svc: Service,
    job_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda j: (
        j["status"] in ("succeeded", "failed", "cancelled")
    ),
    timeout_s: float = 90,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = job(svc, job_id)
        if until(row):
            return row
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not get there: {job(svc, job_id)}\n{svc.logs()}")


def worker_of(svc: Service, row: dict[str, Any]) -> subprocess.Popen[bytes]:
    """The worker process running a job (its name is host:pid)."""
    pid = int(str(row["worker"]).rsplit(":", 1)[1])
    return next(p for p in svc.workers if p.pid == pid)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def generated_text(paragraphs: int, seed: int = 0) -> str:
    words = ["alpha", "river", "stone", "engine", "violet", "harbor", "quartz", "meadow"]
    out = []
    for p in range(paragraphs):
        sentence = " ".join(words[(p * 7 + i * 3 + seed) % len(words)] for i in range(60))
        out.append(f"Paragraph {p} of document {seed}. {sentence}.")
    return "\n\n".join(out)


def wait_next_sweep(svc: Service, timeout_s: float = 60) -> None:
    """Return once a sweep that started after this call has finished (the periodic task)."""
    with svc.db() as db:
        since = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]  # type: ignore[index]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with svc.db() as db:
            done = db.execute(
                """SELECT 1 FROM procrastinate_jobs j
                   JOIN procrastinate_events started
                        ON started.job_id = j.id AND started.type = 'started'
                   WHERE j.task_name = 'prepshelf.sweep' AND j.status = 'succeeded'
                     AND started.at > %s
                   LIMIT 1""",
                [since],
            ).fetchone()
        if done:
            return
        time.sleep(0.1)
    raise AssertionError(f"no sweep ran within {timeout_s} s\n{svc.logs()}")
