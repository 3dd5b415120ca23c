"""Fair share of the ingest queue between projects: a project's new files queue behind its
own waiting files only, and the sweeper renumbers waiting files per project so an old
backlog is not overtaken for good by a newer one."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from prepshelf.jobs.queue import INGEST_QUEUE
from prepshelf.store import queue_turns
from support.postgres import TestPostgres as Postgres  # not collected as a test class
from support.service import Service
from support.tenants import Tenant, new_tenant, ok


def _attach(tenant: Tenant, store_id: str, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        uploaded = ok(
            tenant.http.post(
                "/v1/files",
                files={"file": (f"{tag}-{i}.txt", io.BytesIO(f"{tag} note {i}".encode()))},
                data={"purpose": "assistants"},
            )
        )
        ids.append(uploaded["id"])
    ok(tenant.http.post(f"/v1/vector_stores/{store_id}/file_batches", json={"file_ids": ids}))
    return ids


def _fetch_order(svc: Service) -> list[str]:
    """The project of each waiting ingest job, in the order the queue hands them out."""
    with svc.db() as db:
        rows = db.execute(
            """SELECT j.project_id FROM procrastinate_jobs q JOIN jobs j ON j.queue_job_id = q.id
               WHERE q.queue_name = %s AND q.status = 'todo' ORDER BY q.priority DESC, q.id""",
            [INGEST_QUEUE],
        ).fetchall()
    return [r["project_id"] for r in rows]


@pytest.fixture(scope="module")
def desk(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API alone: queued jobs stay queued, so the queue's order can be read."""
    with Service(postgres.new_database(), Path(tmp_path_factory.mktemp("desk")), workers=0) as svc:
        yield svc


def test_new_files_queue_behind_their_own_projects_files_only(desk: Service) -> None:
    a, b = new_tenant(desk, "a"), new_tenant(desk, "b")
    store_a = ok(a.http.post("/v1/vector_stores", json={"name": "a"}))["id"]
    store_b = ok(b.http.post("/v1/vector_stores", json={"name": "b"}))["id"]
    _attach(a, store_a, 4, "a")
    _attach(b, store_b, 2, "b")
    _attach(a, store_a, 1, "a-late")
    pa, pb = a.project_id, b.project_id
    assert _fetch_order(desk) == [pa, pb, pa, pb, pa, pa, pa]

    # A's first three are done; B queues three more. Without renumbering, B's would all go
    # ahead of A's older two (queued at -3 and -4); after it, the projects alternate again.
    with desk.db() as db:
        db.execute(
            """UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id IN (
                   SELECT q.id FROM procrastinate_jobs q JOIN jobs j ON j.queue_job_id = q.id
                   WHERE j.project_id = %s ORDER BY q.id LIMIT 3)""",
            [pa],
        )
    _attach(b, store_b, 3, "b-more")
    assert _fetch_order(desk) == [pb, pb, pb, pa, pb, pa, pb]

    async def rerank() -> int:
        async with await psycopg.AsyncConnection.connect(
            desk.database_url, autocommit=True, row_factory=psycopg.rows.dict_row
        ) as conn:
            return await queue_turns.rerank_waiting(conn, queue=INGEST_QUEUE)

    assert asyncio.run(rerank()) > 0
    # Each project's k-th waiting file at -k; at equal rank the one queued first goes first.
    assert _fetch_order(desk) == [pa, pb, pb, pa, pb, pb, pb]


@pytest.fixture(scope="module")
def svc(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("fair")),
        extra_env={"PREPSHELF_INGEST_CONCURRENCY": "1"},
    ) as service:
        yield service


def test_one_file_of_another_project_is_not_held_up_by_a_backlog(svc: Service) -> None:
    a, b = new_tenant(svc, "big"), new_tenant(svc, "small")
    store_a = ok(a.http.post("/v1/vector_stores", json={"name": "backlog"}))["id"]
    store_b = ok(b.http.post("/v1/vector_stores", json={"name": "one"}))["id"]
    _attach(a, store_a, 60, "backlog")
    (file_b,) = _attach(b, store_b, 1, "urgent")
    rows: list[dict[str, Any]] = []
    for _ in range(600):
        with svc.db() as db:
            rows = db.execute(
                "SELECT status, finished_at FROM jobs WHERE file_id = %s", [file_b]
            ).fetchall()
        if rows and rows[0]["status"] == "succeeded":
            break
        time.sleep(0.1)
    (done,) = rows
    assert done["status"] == "succeeded"
    with svc.db() as db:
        before = db.execute(
            "SELECT count(*) AS n FROM jobs WHERE project_id = %s AND finished_at < %s",
            [a.project_id, done["finished_at"]],
        ).fetchone()
    assert before is not None and before["n"] < 10, before  # not behind the 60
