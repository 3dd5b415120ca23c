"""Each maintenance step against a real database (and real blob stores): it does its job,
leaves everything else alone, and a second run finds nothing more to do."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.rows import dict_row

from prepshelf.jobs import maintenance
from prepshelf.settings import Settings
from prepshelf.store.blobs import LocalBlobStore
from prepshelf.store.blobs_s3 import S3BlobStore
from prepshelf.store.db import open_pool
from support.postgres import sql
from support.s3 import MotoServer

T = TypeVar("T")
DAY = 24 * 3600


def run(database_url: str, step: Callable[[Any], Awaitable[T]]) -> T:
    async def main() -> T:
        conn = await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        )
        async with conn:
            return await step(conn)

    return asyncio.run(main())


def _store(database_url: str, store_id: str, expires_in_s: float | None) -> None:
    sql(
        database_url,
        """INSERT INTO vector_stores (id, project_id, embedding_model, dimensions, expires_after,
                                      expires_at)
           VALUES (%s, 'proj-m', 'm', 384,
                   CASE WHEN %s::float8 IS NULL THEN NULL
                        ELSE '{"anchor": "last_active_at", "days": 1}'::jsonb END,
                   clock_timestamp() + make_interval(secs => %s))""",
        [store_id, expires_in_s, expires_in_s],
    )


def test_expire_vector_stores(database_url: str) -> None:
    _store(database_url, "vs_m_past", -60)
    _store(database_url, "vs_m_future", 3600)
    _store(database_url, "vs_m_never", None)
    assert run(database_url, maintenance.expire_vector_stores) == ["vs_m_past"]
    assert run(database_url, maintenance.expire_vector_stores) == []  # sticky, done once
    rows = sql(database_url, "SELECT id FROM vector_stores WHERE expired_at IS NOT NULL")
    assert [r["id"] for r in rows] == ["vs_m_past"]


def test_prune_audit_rows_and_skip_when_table_absent(database_url: str) -> None:
    for row_id, age_s in (("aud_old", 100 * DAY), ("aud_new", 60)):
        sql(
            database_url,
            """INSERT INTO audit_events (id, project_id, actor, method, route, status_code,
                                         created_at)
               VALUES (%s, 'p', 'key', 'POST', '/v1/files', 200,
                       clock_timestamp() - make_interval(secs => %s))""",
            [row_id, age_s],
        )
    removed = run(database_url, lambda c: maintenance.prune_audit(c, older_than_s=90 * DAY))
    assert removed == 1
    assert [r["id"] for r in sql(database_url, "SELECT id FROM audit_events")] == ["aud_new"]

    sql(database_url, "ALTER TABLE audit_events RENAME TO audit_events_away")
    try:
        assert run(database_url, lambda c: maintenance.prune_audit(c, older_than_s=1)) == 0
    finally:
        sql(database_url, "ALTER TABLE audit_events_away RENAME TO audit_events")


def test_vacuum_embedding_cache_by_age(database_url: str) -> None:
    for digest, age_days in ((b"old", 40), (b"new", 1)):
        sql(
            database_url,
            """INSERT INTO embedding_cache (project_id, model, text_sha256, embedding, created_at)
               VALUES ('p', 'm-vacuum', %s, '[1,2,3]',
                       clock_timestamp() - make_interval(days => %s))""",
            [digest, age_days],
        )
    dropped = run(database_url, lambda c: maintenance.vacuum_embedding_cache(c, max_age_days=30))
    assert dropped == 1
    left = sql(database_url, "SELECT text_sha256 FROM embedding_cache WHERE model = 'm-vacuum'")
    assert [bytes(r["text_sha256"]) for r in left] == [b"new"]


def _file_row(database_url: str, file_id: str) -> None:
    sql(
        database_url,
        """INSERT INTO files (id, project_id, filename, purpose, bytes, sha256, blob_key)
           VALUES (%s, 'p', 'f.txt', 'assistants', 1, 'x', %s)""",
        [file_id, f"files/{file_id}"],
    )


def _local_blob(store: LocalBlobStore, key: str, age_s: float) -> Path:
    path = store.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_delete_orphan_local_blobs(database_url: str, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _file_row(database_url, "file-kept")
    kept = _local_blob(store, "files/file-kept", DAY)
    orphan = _local_blob(store, "files/file-orphan", DAY)
    young = _local_blob(store, "files/file-young", 10)  # maybe an upload about to commit
    partial = _local_blob(store, "files/.file-crashed.123.part", DAY)
    other = _local_blob(store, "batches/b1/output.jsonl", DAY)  # another feature's prefix

    removed = run(database_url, lambda c: maintenance.delete_orphan_blobs(c, store, grace_s=3600))
    assert removed == 2
    assert kept.exists() and young.exists() and other.exists()
    assert not orphan.exists() and not partial.exists()
    assert run(database_url, lambda c: maintenance.delete_orphan_blobs(c, store, grace_s=3600)) == 0


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


def test_delete_orphan_s3_blobs_and_stale_uploads(
    database_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    s3 = moto.client()
    s3.create_bucket(Bucket="maint")
    store = S3BlobStore(s3, bucket="maint", prefix="pfx", tmp_dir=tmp_path)
    _file_row(database_url, "file-s3kept")
    for key in ("files/file-s3kept", "files/file-s3orphan", "batches/b1/out.jsonl"):
        s3.put_object(Bucket="maint", Key=f"pfx/{key}", Body=b"x")
    s3.create_multipart_upload(Bucket="maint", Key="pfx/files/file-abandoned")

    removed = run(database_url, lambda c: maintenance.delete_orphan_blobs(c, store, grace_s=0))
    assert removed == 2
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="maint")["Contents"]}
    assert keys == {"pfx/files/file-s3kept", "pfx/batches/b1/out.jsonl"}
    assert not s3.list_multipart_uploads(Bucket="maint").get("Uploads")


def test_run_all_runs_every_step(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path)

    async def main() -> dict[str, int]:
        pool = await open_pool(database_url, max_size=2)
        await pool.open()
        try:
            res = SimpleNamespace(settings=settings, pool=pool, blobs=LocalBlobStore(tmp_path))
            return await maintenance.run_all(res)  # type: ignore[arg-type]
        finally:
            await pool.close()

    done = asyncio.run(main())
    assert set(done) == {
        "expired_vector_stores",
        "audit_rows_pruned",
        "orphan_blobs_deleted",
        "embedding_cache_dropped",
    }
