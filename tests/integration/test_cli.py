"""The `prepshelf` client commands as a user runs them: subprocesses against a real service.

Their output is captured (not a TTY), so these also check the plain-line output for CI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support.corpus import CORPUS, needs_corpus
from support.service import Service, base_env

pytestmark = needs_corpus

GOOD = ["codeblock.md", "simple-table.md", "minimal-document.pdf"]
BAD = "bad/r2-user-password.pdf"


def prepshelf(svc: Service, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = base_env(PREPSHELF_URL=f"http://127.0.0.1:{svc.port}", PREPSHELF_API_KEY=svc.api_key)
    return subprocess.run(
        [sys.executable, "-m", "prepshelf", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _folder(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "docs"
    (folder / "nested").mkdir(parents=True)
    for i, name in enumerate(names):
        target = folder / ("nested" if i % 2 else "") / Path(name).name
        shutil.copyfile(CORPUS / name, target)
    return folder


def test_ingest_reports_the_failed_file_and_exits_1(service: Service, tmp_path: Path) -> None:
    folder = _folder(tmp_path, [*GOOD, BAD])
    run = prepshelf(service, "ingest", str(folder), "--store", "cli-mixed", "--wait")
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout
    assert "created vector store 'cli-mixed'" in out
    assert "3 completed, 1 failed of 4 file(s)" in out
    failed_rows = [line for line in out.splitlines() if line.startswith("docs/")]
    bad_row = next(line for line in failed_rows if "r2-user-password.pdf" in line)
    assert "\tfailed\t" in bad_row
    assert "encrypt" in bad_row.lower() or "password" in bad_row.lower()
    # Plain mode: no progress-bar control characters in captured output.
    assert "\x1b[" not in out

    with service.db() as db:
        rows = db.execute(
            """SELECT vsf.status, count(*) AS n FROM vector_store_files vsf
               JOIN vector_stores vs ON vs.id = vsf.vector_store_id
               WHERE vs.name = 'cli-mixed' GROUP BY vsf.status"""
        ).fetchall()
    assert {r["status"]: r["n"] for r in rows} == {"completed": 3, "failed": 1}


def test_ingest_good_files_exits_0_and_reuses_the_store(service: Service, tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD[:2])
    first = prepshelf(service, "ingest", str(folder), "--store", "cli-good", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 completed, 0 failed of 2 file(s)" in first.stdout
    single = tmp_path / "single.md"
    shutil.copyfile(CORPUS / "project-governance.md", single)
    again = prepshelf(service, "ingest", str(single), "--store", "cli-good", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "using vector store 'cli-good'" in again.stdout
    with service.db() as db:
        stores = db.execute("SELECT id FROM vector_stores WHERE name = 'cli-good'").fetchall()
        assert len(stores) == 1
        n = db.execute(
            "SELECT count(*) AS n FROM vector_store_files WHERE vector_store_id = %s "
            "AND status = 'completed'",
            [stores[0]["id"]],
        ).fetchone()
    assert n is not None and n["n"] == 3


def test_ingest_without_wait_and_bad_paths(service: Service, tmp_path: Path) -> None:
    single = tmp_path / "codeblock.md"
    shutil.copyfile(CORPUS / "codeblock.md", single)
    run = prepshelf(service, "ingest", str(single), "--store", "cli-nowait")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "file batch vsfb_" in run.stdout
    missing = prepshelf(service, "ingest", str(tmp_path / "nope"), "--store", "cli-nowait")
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr


def test_jobs_lists_status_and_errors(service: Service, tmp_path: Path) -> None:
    folder = _folder(tmp_path, [GOOD[0], BAD])
    assert prepshelf(service, "ingest", str(folder), "--store", "cli-jobs", "--wait").returncode
    run = prepshelf(service, "jobs", "--store", "cli-jobs")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["job", "status"]
    rows = [line.split("\t") for line in lines[1:]]
    assert sorted(r[1] for r in rows) == ["failed", "succeeded"]
    failed = next(r for r in rows if r[1] == "failed")
    assert failed[0].startswith("job_") and "r2-user-password.pdf" in failed[-1]
    # Finished jobs show the stage they ended in: where it failed, or the last one done.
    assert failed[2] == "parsing"
    assert next(r for r in rows if r[1] == "succeeded")[2] == "indexing"

    only_failed = prepshelf(service, "jobs", "--store", "cli-jobs", "--status", "failed")
    assert [line.split("\t")[1] for line in only_failed.stdout.splitlines()[1:]] == ["failed"]

    unknown = prepshelf(service, "jobs", "--store", "no-such-store")
    assert unknown.returncode == 1 and "no vector store named" in unknown.stderr


def test_search_prints_ranked_results(service: Service, tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["minimal-document.pdf", "simple-table.md"])
    ingest = prepshelf(service, "ingest", str(folder), "--store", "cli-search", "--wait")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    run = prepshelf(service, "search", "cli-search", "lorem ipsum dolor", "-n", "2")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("1. ") and "minimal-document.pdf" in lines[0]
    assert "lorem" in lines[1].lower()
    assert len([line for line in lines if line[:1].isdigit()]) <= 2


def test_wrong_key_is_a_clear_error(service: Service) -> None:
    env = base_env(PREPSHELF_URL=f"http://127.0.0.1:{service.port}", PREPSHELF_API_KEY="sk-wrong")
    run = subprocess.run(
        [sys.executable, "-m", "prepshelf", "jobs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert "HTTP 401" in run.stderr and "sk-wrong" not in run.stderr
    # It names the server it tried and where the URL and the key came from.
    assert f"http://127.0.0.1:{service.port} (from PREPSHELF_URL)" in run.stderr
    assert "sent the key from PREPSHELF_API_KEY" in run.stderr


def test_rerun_skips_unchanged_files_and_replaces_changed_ones(
    service: Service, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, GOOD[:2])
    first = prepshelf(service, "ingest", str(folder), "--store", "cli-sync", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr

    def store_state() -> tuple[dict[str, str], int]:
        with service.db() as db:
            rows = db.execute(
                """SELECT vsf.file_id, vsf.status, vsf.attributes->>'source' AS source
                   FROM vector_store_files vsf JOIN vector_stores vs ON vs.id = vsf.vector_store_id
                   WHERE vs.name = 'cli-sync'"""
            ).fetchall()
            jobs = db.execute(
                "SELECT count(*) AS n FROM jobs WHERE kind = 'ingest_file'"
            ).fetchone()
        assert all(r["status"] == "completed" for r in rows), rows
        assert jobs is not None
        return {r["source"]: r["file_id"] for r in rows}, int(jobs["n"])

    files_before, jobs_before = store_state()
    assert len(files_before) == 2

    again = prepshelf(service, "ingest", str(folder), "--store", "cli-sync", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 file(s) unchanged since the last run: skipped" in again.stdout
    assert "0 completed, 2 unchanged, 0 failed of 2 file(s)" in again.stdout
    assert store_state() == (files_before, jobs_before)  # nothing uploaded, no job created

    changed = folder / Path(GOOD[0]).name
    changed.write_text(changed.read_text() + "\n\nA paragraph added since the first run.\n")
    third = prepshelf(service, "ingest", str(folder), "--store", "cli-sync", "--wait")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "1 completed, 1 unchanged, 0 failed of 2 file(s)" in third.stdout
    assert "1 older version(s) of changed files left the store" in third.stdout
    files_after, jobs_after = store_state()
    assert jobs_after == jobs_before + 1
    source = f"docs/{changed.name}"
    assert set(files_after) == set(files_before)
    assert files_after[source] != files_before[source]  # the new version replaced the old
    other = next(s for s in files_before if s != source)
    assert files_after[other] == files_before[other]

    forced = prepshelf(service, "ingest", str(folder), "--store", "cli-sync", "--wait", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "2 completed, 0 failed of 2 file(s)" in forced.stdout


def test_rerun_runs_failed_files_again_without_uploading_them(
    service: Service, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, [GOOD[0], BAD])
    first = prepshelf(service, "ingest", str(folder), "--store", "cli-retry", "--wait")
    assert first.returncode == 1, first.stdout + first.stderr

    def bad_rows() -> tuple[list[str], int]:
        with service.db() as db:
            files = db.execute(
                """SELECT vsf.file_id FROM vector_store_files vsf
                   JOIN vector_stores vs ON vs.id = vsf.vector_store_id
                   WHERE vs.name = 'cli-retry' AND vsf.attributes->>'source' LIKE '%r2-user%'"""
            ).fetchall()
            uploads = db.execute(
                "SELECT count(*) AS n FROM files WHERE filename = 'r2-user-password.pdf'"
            ).fetchone()
        assert uploads is not None
        return [r["file_id"] for r in files], int(uploads["n"])

    before, uploads_before = bad_rows()
    again = prepshelf(service, "ingest", str(folder), "--store", "cli-retry", "--wait")
    assert again.returncode == 1, again.stdout + again.stderr  # the same bytes fail again
    assert "1 file(s) unchanged since the last run: skipped" in again.stdout
    assert "1 file(s) failed or were cancelled before with the same bytes" in again.stdout
    assert "failed before, sent again" in again.stdout
    assert "0 completed, 1 unchanged, 1 failed of 2 file(s)" in again.stdout
    assert bad_rows() == (before, uploads_before)  # same file id, nothing uploaded
    with service.db() as db:
        jobs = db.execute(
            "SELECT count(*) AS n FROM jobs WHERE file_id = %s", [before[0]]
        ).fetchone()
    assert jobs is not None and jobs["n"] == 2  # it did run again

    forced = prepshelf(service, "ingest", str(folder), "--store", "cli-retry", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert bad_rows()[1] == uploads_before + 1  # --force uploads a new copy
