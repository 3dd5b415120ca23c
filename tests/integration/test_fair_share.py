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

from prepshelf.jobs.queue import INGEST_QUEUE, SMALL_INGEST_QUEUE
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
    """The project of each waiting small-file ingest job (the files here are a line each), in
    the order the queue hands them out."""
    with svc.db() as db:
        rows = db.execute(
            """SELECT j.project_id FROM procrastinate_jobs q JOIN jobs j ON j.queue_job_id = q.id
               WHERE q.queue_name = %s AND q.status = 'todo' ORDER BY q.priority DESC, q.id""",
            [SMALL_INGEST_QUEUE],
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
            return await queue_turns.rerank_waiting(conn, queue=SMALL_INGEST_QUEUE)

    assert asyncio.run(rerank()) > 0
    # Each project's k-th waiting file at -k; at equal rank the one queued first goes first.
    assert _fetch_order(desk) == [pa, pb, pb, pa, pb, pb, pb]


def test_small_files_have_a_lane_of_their_own(desk: Service) -> None:
    """Files up to PREPSHELF_SMALL_FILE_MAX_BYTES (64 KiB) queue in the small files' lane, the
    rest in the main one: a one-paragraph file never waits for a slot a large file holds."""
    tenant = new_tenant(desk, "lanes")
    store = ok(tenant.http.post("/v1/vector_stores", json={"name": "lanes"}))["id"]
    sizes = {"small.txt": 64 * 1024, "large.txt": 64 * 1024 + 1}
    ids = {
        name: ok(
            tenant.http.post(
                "/v1/files",
                files={"file": (name, io.BytesIO(b"x" * size))},
                data={"purpose": "assistants"},
            )
        )["id"]
        for name, size in sizes.items()
    }
    ok(
        tenant.http.post(
            f"/v1/vector_stores/{store}/file_batches", json={"file_ids": list(ids.values())}
        )
    )
    with desk.db() as db:
        lanes = {
            r["file_id"]: r["queue_name"]
            for r in db.execute(
                """SELECT j.file_id, q.queue_name FROM jobs j
                   JOIN procrastinate_jobs q ON q.id = j.queue_job_id WHERE j.project_id = %s""",
                [tenant.project_id],
            ).fetchall()
        }
    assert lanes == {ids["small.txt"]: SMALL_INGEST_QUEUE, ids["large.txt"]: INGEST_QUEUE}


@pytest.fixture(scope="module")
def svc(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("fair")),
        # One file at a time in each lane: what is measured is the order the queue hands out.
        extra_env={"PREPSHELF_INGEST_CONCURRENCY": "1", "PREPSHELF_SMALL_INGEST_CONCURRENCY": "1"},
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
