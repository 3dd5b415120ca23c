"""Beyond one machine: one PostgreSQL server on its own, two `prepshelf api` and three
`prepshelf worker` processes sharing one data dir, started all at once on an empty database.

Migrations run exactly once; a client spreads a batch's uploads and polls over both APIs;
one API and one busy worker are killed with SIGKILL mid-batch; the client fails over, the
dead worker's job is swept back onto the queue, and the batch completes with nothing lost,
processed by several workers.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from prepshelf.store.migrate import _migration_files
from support import postgres as pg_support
from support.cluster import Cluster, SpreadClient
from support.service import FAST_RECOVERY

N_FILES = 18
WORDS = [
    "river",
    "stone",
    "lantern",
    "harbor",
    "meadow",
    "copper",
    "violet",
    "engine",
    "orbit",
    "canyon",
    "willow",
    "signal",
    "archive",
    "falcon",
    "glacier",
    "pepper",
    "quartz",
    "saddle",
    "thunder",
    "velvet",
    "walnut",
    "yonder",
    "zephyr",
]


@pytest.fixture(scope="module")
def empty_database(postgres: pg_support.TestPostgres) -> str:
    """A database with no schema at all: the processes' start-up migrates it."""
    name = "topo_" + secrets.token_hex(6)
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url(name)


@pytest.fixture(scope="module")
def cluster(empty_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {
        **FAST_RECOVERY,
        "PREPSHELF_TORCH_THREADS": "1",
        "PREPSHELF_WORKER_NICE": "0",
    }
    c = Cluster(empty_database, Path(tmp_path_factory.mktemp("topo")), extra_env=env)
    try:
        yield c.start()
    finally:
        c.stop()


def _text(seed: int) -> bytes:
    rng = random.Random(seed)
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + f" (document {seed})."
        for _ in range(500)
    ]
    return "\n".join(sentences).encode()


def test_migrations_ran_once_without_errors(cluster: Cluster) -> None:
    with cluster.db() as db:
        rows = db.execute("SELECT version FROM prepshelf_migrations ORDER BY version").fetchall()
    expected = [0] + [version for version, _, _ in _migration_files()]
    assert [r["version"] for r in rows] == expected
    logs = cluster.logs()
    assert "Traceback" not in logs
    assert not re.search(r"\bERROR\b", logs)
    applied = re.findall(r"applied migration (\S+)", logs)
    assert len(applied) == len(set(applied)) == len(expected)


def _wait(client: SpreadClient, path: str, done: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.request("GET", path).json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def _running_pids(cluster: Cluster) -> list[int]:
    """The pids of live worker processes that hold a running job now."""
    pids = {p.pid for p in cluster.workers if p.poll() is None}
    with cluster.db() as db:
        rows = db.execute("SELECT worker FROM jobs WHERE status = 'running'").fetchall()
    found = [int(str(row["worker"]).rsplit(":", 1)[-1].split("/")[0]) for row in rows]
    return [pid for pid in found if pid in pids]


def _freeze_busy_worker(cluster: Cluster, timeout_s: float) -> int | None:
    """SIGSTOP a worker that is running a job and return its pid once the job is seen still
    running with the worker frozen. Small jobs can finish between reading the row and a
    signal; a frozen worker cannot, so the kill that follows always lands mid-job."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in _running_pids(cluster):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.3)  # let a commit already sent reach the server
            if pid in _running_pids(cluster):
                return pid
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    return None


def test_batch_survives_killed_api_and_worker(cluster: Cluster) -> None:
    client = cluster.client()
    try:
        file_ids = []
        for i in range(N_FILES):
            response = client.request(
                "POST",
                "/v1/files",
                files={"file": (f"doc-{i}.txt", _text(i))},
                data={"purpose": "assistants"},
            )
            assert response.status_code == 200, response.text
            file_ids.append(response.json()["id"])
        assert all(n > 0 for n in client.used.values())  # both APIs took uploads

        store = client.request("POST", "/v1/vector_stores", json={"name": "topology"}).json()
        batch = client.request(
            "POST",
            f"/v1/vector_stores/{store['id']}/file_batches",
            json={"file_ids": file_ids},
        ).json()
        path = f"/v1/vector_stores/{store['id']}/file_batches/{batch['id']}"

        # Mid-batch: some files done, a worker busy with one.
        _wait(client, path, lambda b: b["file_counts"]["completed"] >= 2, 120)
        victim = _freeze_busy_worker(cluster, 60)
        assert victim is not None, "no worker was busy mid-batch"
        os.kill(victim, signal.SIGKILL)
        os.kill(cluster.apis[0].pid, signal.SIGKILL)
        cluster.apis[0].wait()

        final = _wait(client, path, lambda b: b["status"] != "in_progress", 180)
        assert client.failovers > 0  # requests meant for the dead API went to the other
        assert final["status"] == "completed", final
        assert final["file_counts"]["completed"] == N_FILES
        assert final["file_counts"]["failed"] == 0

        with cluster.db() as db:
            jobs = db.execute(
                "SELECT file_id, worker, attempts, status FROM jobs WHERE vector_store_id = %s",
                [store["id"]],
            ).fetchall()
            chunked = db.execute(
                "SELECT count(DISTINCT file_id) AS n FROM chunks WHERE vector_store_id = %s "
                "AND embedding IS NOT NULL",
                [store["id"]],
            ).fetchone()
        assert {j["file_id"] for j in jobs} == set(file_ids)
        assert all(j["status"] == "succeeded" for j in jobs)
        workers = {str(j["worker"]).split("/")[0] for j in jobs}
        assert len(workers) >= 2, workers
        assert any(j["attempts"] >= 2 for j in jobs)  # the killed worker's job ran again
        assert chunked is not None and chunked["n"] == N_FILES

        hits = client.request(
            "POST",
            f"/v1/vector_stores/{store['id']}/search",
            json={"query": "document 7", "max_num_results": 3},
        )
        assert hits.status_code == 200 and hits.json()["data"]
    finally:
        client.close()
