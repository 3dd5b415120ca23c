"""Archives through the API: members become files and jobs of their own, the archive reports.

Counting choice under test: an archive's members join the archive's batch, so a batch's
file_counts count the archive entry AND each member; the archive stays in_progress until its
last member is final, so `upload_and_poll` returns only when everything inside is done.
"""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from support.corpus import CORPUS, needs_corpus
from support.service import Service

pytestmark = [needs_corpus]


def _upload_batch(svc: Service, paths: list[Path]) -> tuple[Any, str]:
    client = svc.openai()
    vs = client.vector_stores.create(name="archives")
    handles = [p.open("rb") for p in paths]
    try:
        batch = client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=vs.id, files=handles, max_concurrency=2
        )
    finally:
        for h in handles:
            h.close()
    return batch, vs.id


def _store_rows(svc: Service, store_id: str) -> dict[str, dict[str, Any]]:
    with svc.db() as db:
        rows = db.execute(
            """SELECT f.id, f.filename, f.parent_file_id, f.archive_depth, vsf.status,
                      vsf.last_error, vsf.file_batch_id, vsf.attributes, j.result, j.error
               FROM vector_store_files vsf JOIN files f ON f.id = vsf.file_id
               LEFT JOIN jobs j ON j.id = vsf.job_id
               WHERE vsf.vector_store_id = %s""",
            [store_id],
        ).fetchall()
    return {r["filename"]: r for r in rows}


def test_good_archives_expand_and_complete(service: Service, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(mixed, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("notes/readme.txt", "The lighthouse keeper logs every passing ship.")
        zf.writestr("../../escape.txt", "never written")
        zf.writestr("blank.txt", "   ")
    paths = [CORPUS / "pypdf-docs-bundle.zip", CORPUS / "office-docs.tar", mixed]
    batch, store_id = _upload_batch(service, paths)
    rows = _store_rows(service, store_id)

    archives = {p.name: rows[p.name] for p in paths}
    members = {n: r for n, r in rows.items() if r["parent_file_id"]}
    assert {a: r["status"] for a, r in archives.items()} == dict.fromkeys(archives, "completed")
    assert all(r["last_error"] is None for r in archives.values())
    assert len(members) == 5 + 3 + 2
    assert "Übersicht/Seige_of_Vicksburg_Sample_OCR.pdf" in members
    assert members["blank.txt"]["status"] == "failed"
    assert all(r["status"] == "completed" for n, r in members.items() if n != "blank.txt")
    assert all(r["file_batch_id"] == batch.id and r["archive_depth"] == 1 for r in members.values())

    # Counting: archives and members alike, exact, nothing left in progress.
    counts = batch.file_counts
    assert (counts.in_progress, counts.total) == (0, len(paths) + len(members))
    assert (counts.completed, counts.failed) == (len(paths) + len(members) - 1, 1)

    # The archive's job tells what was skipped and what failed.
    result = archives["mixed.zip"]["result"]
    assert result["refused"] == [{"name": "../../escape.txt", "reason": "path traversal"}]
    assert (result["completed"], result["failed"]) == (1, 1)
    assert result["failed_members"][0]["name"] == "blank.txt"
    assert not (tmp_path.parent / "escape.txt").exists()
    assert not (service.data_dir / "tmp" / "expand").exists() or not any(
        (service.data_dir / "tmp" / "expand").iterdir()
    )

    # Members are searchable as their own files.
    hits = service.openai().vector_stores.search(
        vector_store_id=store_id, query="lighthouse keeper passing ships", max_num_results=3
    )
    assert hits.data[0].filename == "notes/readme.txt"


def test_bad_archives_fail_with_precise_reasons(service: Service, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("A plain file in the same batch completes regardless.")
    bad = CORPUS / "bad"
    paths = [
        bad / "zip-traversal.zip",
        bad / "zip-bomb-1gib.zip",
        bad / "nested-zip-40-levels.zip",
        good,
    ]
    batch, store_id = _upload_batch(service, paths)
    rows = _store_rows(service, store_id)

    assert rows["good.txt"]["status"] == "completed"
    traversal = rows["zip-traversal.zip"]["last_error"]
    assert traversal["code"] == "invalid_file"
    assert traversal["message"].startswith("zip-traversal.zip: expanding: all 4 members refused: ")
    assert "'../../etc/x' (path traversal)" in traversal["message"]
    assert "'/tmp/prepshelf_dev_abs.txt' (absolute path)" in traversal["message"]
    bomb = rows["zip-bomb-1gib.zip"]["last_error"]
    assert bomb["code"] == "invalid_file"
    assert "1 GiB (uncompressed-size limit" in bomb["message"]
    nested = rows["nested-zip-40-levels.zip"]
    assert nested["status"] == "failed"
    assert nested["last_error"]["message"].startswith("nested-zip-40-levels.zip: members: ")
    assert "nesting limit" in nested["last_error"]["message"]
    chain = {n: r for n, r in rows.items() if r["parent_file_id"]}
    assert sorted(chain) == ["level1.zip", "level2.zip", "level3.zip"]
    assert all(r["status"] == "failed" for r in chain.values())

    counts = batch.file_counts
    assert counts.in_progress == 0 and counts.total == len(paths) + 3
    assert (counts.completed, counts.failed) == (1, len(paths) - 1 + 3)

    assert not Path("/tmp/prepshelf_dev_abs.txt").exists()
    for p in (tmp_path, tmp_path.parent, service.data_dir.parent):
        assert not (p / "escape.txt").exists()
        assert not (p / "windows-style-escape.txt").exists()
    assert service.http().get("/readyz").status_code == 200


def _expanding_archive(
    service: Service, tmp_path: Path, store: str
) -> tuple[Any, Any, Any, dict[str, Any] | None]:
    """A 12-member ZIP attached to a new store, returned once its members exist or once the
    archive has ended: (client, store, uploaded file, the archive's row if it ended first).
    Each member is over 64 KiB, so members run in the main lane, a few at a time, and are
    still running when the tests act (small files would all finish at once in theirs)."""
    big = tmp_path / "many.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(12):
            zf.writestr(f"part-{i}.txt", f"section {i}: " + "harbour tides and cargo. " * 2800)
    client = service.openai()
    vs = client.vector_stores.create(name=store)
    with big.open("rb") as fh:
        uploaded = client.files.create(file=fh, purpose="assistants")
    client.vector_stores.files.create(vector_store_id=vs.id, file_id=uploaded.id)
    for _ in range(600):
        rows = _store_rows(service, vs.id)
        if len(rows) > 1:
            return client, vs, uploaded, None
        if rows["many.zip"]["status"] != "in_progress":
            return client, vs, uploaded, rows["many.zip"]
        time.sleep(0.1)
    pytest.fail("the archive was never expanded")


def test_cancelling_an_archive_cancels_its_members(service: Service, tmp_path: Path) -> None:
    client, vs, uploaded, ended = _expanding_archive(service, tmp_path, "cancel")
    if ended is not None:
        pytest.fail(f"archive ended before expansion was seen: {ended}")
    http = service.http()
    job_id = _job_of(service, vs.id, uploaded.id)
    assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    final = _poll_final(client, vs.id, uploaded.id)
    assert final.status == "cancelled"
    rows = _store_rows(service, vs.id)
    assert all(r["status"] in ("cancelled", "completed") for r in rows.values())
    job = http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["result"]["members"] == 12


def _job_of(svc: Service, store_id: str, file_id: str) -> str:
    with svc.db() as db:
        row = db.execute(
            "SELECT job_id FROM vector_store_files WHERE vector_store_id = %s AND file_id = %s",
            [store_id, file_id],
        ).fetchone()
    assert row is not None
    return str(row["job_id"])


def _poll_final(client: Any, store_id: str, file_id: str) -> Any:
    for _ in range(1200):
        vsf = client.vector_stores.files.retrieve(vector_store_id=store_id, file_id=file_id)
        if vsf.status != "in_progress":
            return vsf
        time.sleep(0.1)
    raise AssertionError("archive never settled")


def test_cancelling_an_archive_while_a_member_finishes_does_not_deadlock(
    service: Service, tmp_path: Path
) -> None:
    """Found in a full run: the cancel route answered 500 (a deadlock) now and then.

    A member's finish locks its own job row, then the archive's store file and job; cancel
    locked the archive and its members in scan order. Here this test's connection plays the
    finishing member: it holds every unfinished member, lets cancel queue up behind it, then
    takes the archive's rows as the member's finish does.
    """
    client, vs, uploaded, _ = _expanding_archive(service, tmp_path, "cancel-race")
    archive_job = _job_of(service, vs.id, uploaded.id)

    outcome: dict[str, Any] = {}
    with psycopg.connect(service.database_url, row_factory=dict_row) as member:
        members = member.execute(
            """SELECT j.id FROM jobs j JOIN vector_store_files vsf ON vsf.job_id = j.id
               JOIN files f ON f.id = vsf.file_id
               WHERE f.parent_file_id = %s AND j.status IN ('queued', 'running')
               FOR UPDATE OF j""",
            [uploaded.id],
        ).fetchall()
        if not members:
            member.rollback()
            pytest.skip("every member finished before the race could be staged")

        def cancel() -> None:
            outcome["status"] = service.http().post(f"/v1/jobs/{archive_job}/cancel").status_code

        canceller = threading.Thread(target=cancel)
        canceller.start()
        with service.db() as watch:
            for _ in range(200):  # until cancel waits for a lock this test holds
                waiting = watch.execute(
                    """SELECT count(*) AS n FROM pg_stat_activity
                       WHERE wait_event_type = 'Lock' AND query LIKE '%%cancel%%'
                         AND pid <> pg_backend_pid()"""
                ).fetchone()
                if waiting and waiting["n"]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("cancel never queued up behind the member's lock")
        member.execute(
            """SELECT 1 FROM vector_store_files WHERE vector_store_id = %s AND file_id = %s
               FOR UPDATE""",
            [vs.id, uploaded.id],
        )
        member.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", [archive_job])
        member.commit()
    canceller.join(timeout=60)

    assert outcome.get("status") == 200
    assert _poll_final(client, vs.id, uploaded.id).status == "cancelled"
