"""Migrations 0072 and 0074: a job's parent is typed (file batch or /v1/batches batch), never
both, and a vector-store file names its file batch by the same word.

A database written before 0072 (file-batch ids in `jobs.batch_id` and
`vector_store_files.batch_id`, checkpoint counters named `batches_*`) is migrated in place: its
file-batch jobs and files stay findable, the events of its jobs keep their file-batch scope, and
the new keys and check hold for rows written afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from prepshelf.store import migrate
from support import postgres as pg_support

BEFORE = 72  # the first migration this module checks


@pytest.fixture(scope="module")
def old_database(postgres: pg_support.TestPostgres) -> Iterator[str]:
    """A database migrated up to, not including, 0072, holding rows in the old shape."""
    name = "parents_" + secrets.token_hex(6)
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres.url(name)
    everything = migrate._migration_files
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(migrate, "_migration_files", lambda: [m for m in everything() if m[0] < BEFORE])
        migrate.apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO vector_stores (id, project_id, embedding_model, dimensions)
               VALUES ('vs_1', 'proj_1', 'fake', 8)"""
        )
        conn.execute("INSERT INTO file_batches (id, vector_store_id) VALUES ('vsfb_kept', 'vs_1')")
        conn.execute(
            """INSERT INTO files (id, project_id, filename, purpose, bytes, sha256, blob_key)
               VALUES ('file-1', 'proj_1', 'a.txt', 'assistants', 1, 'x', 'files/file-1')"""
        )
        conn.execute(
            """INSERT INTO batches (id, project_id, endpoint, input_file_id, completion_window,
                                    status, job_id, expires_at)
               VALUES ('batch_1', 'proj_1', '/v1/embeddings', 'file-in', '24h', 'completed',
                       'job_embed', now() + interval '1 day')"""
        )
        conn.execute(
            """INSERT INTO jobs (id, project_id, kind, status, vector_store_id, file_id,
                                 batch_id, batches_embedded, batches_reused)
               VALUES ('job_ingest', 'proj_1', 'ingest_file', 'queued', 'vs_1', 'file-1',
                       'vsfb_kept', 3, 1),
                      ('job_gone', 'proj_1', 'ingest_file', 'succeeded', 'vs_old', 'file-2',
                       'vsfb_gone', 0, 0),
                      ('job_embed', 'proj_1', 'embed_batch', 'succeeded', NULL, NULL,
                       'batch_1', 2, 0)"""
        )
        conn.execute(
            """INSERT INTO vector_store_files (vector_store_id, file_id, batch_id, job_id, status,
                                               attributes, chunking_strategy)
               VALUES ('vs_1', 'file-1', 'vsfb_kept', 'job_ingest', 'in_progress', '{}', '{}')"""
        )
    assert migrate.apply_migrations(url) == [m[1] for m in everything() if m[0] >= BEFORE]
    yield url


def _db(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def _job(conn: psycopg.Connection[dict[str, Any]], job_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return row


def test_file_batch_ids_moved_and_counters_renamed(old_database: str) -> None:
    with _db(old_database) as conn:
        ingest, gone, embed = (_job(conn, j) for j in ("job_ingest", "job_gone", "job_embed"))
    assert (ingest["file_batch_id"], ingest["batch_id"]) == ("vsfb_kept", None)
    # Its file batch went with its store before the key existed: no dangling id.
    assert (gone["file_batch_id"], gone["batch_id"]) == (None, None)
    assert (embed["file_batch_id"], embed["batch_id"]) == (None, "batch_1")
    assert (ingest["checkpoints_embedded"], ingest["checkpoints_reused"]) == (3, 1)
    assert embed["checkpoints_embedded"] == 2
    assert "batches_embedded" not in ingest and "batches_reused" not in ingest


def test_store_file_keeps_its_file_batch_under_the_new_name(old_database: str) -> None:
    with _db(old_database) as conn:
        row = conn.execute("SELECT * FROM vector_store_files WHERE file_id = 'file-1'").fetchone()
        again = next(m[2] for m in migrate._migration_files() if m[0] == 74)
        conn.execute(again)  # a second run finds nothing to rename
        indexes = {
            r["indexname"]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'vector_store_files'"
            ).fetchall()
        }
    assert row is not None and row["file_batch_id"] == "vsfb_kept" and "batch_id" not in row
    assert "vector_store_files_file_batch" in indexes


def test_migration_runs_twice_unchanged(old_database: str) -> None:
    sql = next(m[2] for m in migrate._migration_files() if m[0] == BEFORE)
    with _db(old_database) as conn:
        before = [_job(conn, j) for j in ("job_ingest", "job_gone", "job_embed")]
        conn.execute(sql)
        after = [_job(conn, j) for j in ("job_ingest", "job_gone", "job_embed")]
    assert after == before


def test_events_of_a_migrated_job_keep_the_file_batch_scope(old_database: str) -> None:
    with _db(old_database) as conn:
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = 'job_ingest'")
        event = conn.execute(
            "SELECT * FROM job_events WHERE job_id = 'job_ingest' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert event is not None and event["type"] == "job.running"
    assert event["batch_id"] == "vsfb_kept"  # the /v1/events?batch_id= scope
    assert (event["data"]["file_batch_id"], event["data"]["batch_id"]) == ("vsfb_kept", None)


def test_a_job_cannot_hold_both_parents(old_database: str) -> None:
    with _db(old_database) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE jobs SET batch_id = 'batch_1' WHERE id = 'job_ingest'")


def test_parents_must_exist(old_database: str) -> None:
    with _db(old_database) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                """INSERT INTO jobs (id, project_id, kind, status, file_batch_id)
                   VALUES ('job_x', 'proj_1', 'ingest_file', 'queued', 'vsfb_nope')"""
            )
        # The batch's key is checked at commit: the job row may come before its batch row.
        with conn.transaction():
            conn.execute(
                """INSERT INTO jobs (id, project_id, kind, status, batch_id)
                   VALUES ('job_y', 'proj_1', 'embed_batch', 'queued', 'batch_2')"""
            )
            conn.execute(
                """INSERT INTO batches (id, project_id, endpoint, input_file_id,
                                        completion_window, status, job_id, expires_at)
                   VALUES ('batch_2', 'proj_1', '/v1/embeddings', 'file-in', '24h',
                           'validating', 'job_y', now() + interval '1 day')"""
            )
        assert _job(conn, "job_y")["batch_id"] == "batch_2"
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute(
                """INSERT INTO jobs (id, project_id, kind, status, batch_id)
                   VALUES ('job_z', 'proj_1', 'embed_batch', 'queued', 'batch_never')"""
            )
        assert conn.execute("SELECT 1 FROM jobs WHERE id = 'job_z'").fetchone() is None
