"""Source syncs: a folder (and an S3 prefix) kept in step with a vector store.

Between runs files are added, changed, touched, deleted and broken; after each run the store
holds exactly the files of the source, each at its current bytes, and the run's report says
what it added, replaced, removed, left alone and failed. Unchanged files cost nothing: no
read when their stamp is unchanged, no copy and no ingest job when only touched.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.runs import ok, store_files, wait_job
from support.s3 import MotoServer
from support.service import Service

TEXTS = {
    "a.txt": "Alpha: the lighthouse keeper logs the fog signal at the Skerryvore rock every night.",
    "b.md": "# Bravo\n\nThe orchard grows forty kinds of apple; the cider press runs in October.",
    "sub/c.txt": "Charlie: glaciers carve U-shaped valleys and leave moraines behind them.",
}
BUCKET = "sync-source"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    server.client().create_bucket(Bucket=BUCKET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(
    database_url: str, roots: Path, moto: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    s3 = moto.env(BUCKET, "unused")
    del s3["PREPSHELF_BLOB_URL"]  # blobs stay local; only the sync reads the bucket
    with Service(
        database_url,
        tmp_path_factory.mktemp("svc"),
        extra_env={
            **s3,
            "PREPSHELF_SYNC_ROOTS": f"{roots},s3://{BUCKET}/team",
            "PREPSHELF_RUN_POLL_INTERVAL_S": "1",
        },
    ) as svc:
        yield svc


def _write(folder: Path, rel: str, text: str) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _sync_now(http: httpx.Client, schedule_id: str) -> dict[str, Any]:
    job = wait_job(http, ok(http.post(f"/v1/schedules/{schedule_id}/run"))["id"])
    assert job["status"] == "succeeded", job
    assert job["kind"] == "source_sync" and job["schedule_id"] == schedule_id
    return dict(job["result"])


def _live(http: httpx.Client, store_id: str) -> dict[str, dict[str, Any]]:
    """source path → the store file that serves it (every file of the store accounted for)."""
    files = store_files(http, store_id)
    by_path: dict[str, dict[str, Any]] = {}
    for f in files:
        path = f["attributes"]["source"]
        assert path not in by_path, f"two versions of {path} left in the store"
        by_path[path] = f
    return by_path


def _paths(entries: list[dict[str, Any]]) -> list[str]:
    return sorted(e["path"] for e in entries)


def _ingest_jobs(http: httpx.Client, store_id: str) -> int:
    page = ok(
        http.get(
            "/v1/jobs", params={"vector_store_id": store_id, "kind": "ingest_file", "limit": 100}
        )
    )
    return len(page["data"])


def test_folder_sync_follows_adds_changes_and_deletes(service: Service, roots: Path) -> None:
    folder = roots / "handbook"
    for rel, text in TEXTS.items():
        _write(folder, rel, text)
    _write(folder, ".draft.md", "hidden: never synced")
    (roots / "outside.txt").write_text("outside the synced folder")
    os.symlink(roots / "outside.txt", folder / "link.txt")  # links are never followed

    with service.http() as http:
        store = ok(http.post("/v1/vector_stores", json={"name": "synced handbook"}))
        schedule = ok(
            http.post(
                "/v1/schedules",
                json={
                    "name": "handbook sync",
                    "kind": "source_sync",
                    "cron": "0 2 * * *",
                    "timezone": "Europe/Berlin",
                    "params": {"vector_store_id": store["id"], "source": str(folder)},
                },
            )
        )
        assert schedule["status"] == "active" and schedule["next_run_at"] > time.time()
        assert schedule["params"]["source"] == str(folder.resolve())

        # First run: everything is new.
        report = _sync_now(http, schedule["id"])
        assert report["counts"] == {
            "added": 3,
            "replaced": 0,
            "removed": 0,
            "unchanged": 0,
            "failed": 0,
        }
        assert _paths(report["added"]) == sorted(TEXTS)
        live = _live(http, store["id"])
        assert set(live) == set(TEXTS) and {f["status"] for f in live.values()} == {"completed"}
        for rel, text in TEXTS.items():
            assert live[rel]["attributes"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
            assert live[rel]["attributes"]["sync_source"] == str(folder.resolve())
        first_b = live["b.md"]["id"]
        first_a = live["a.txt"]["id"]

        # Between runs: b changes, a goes, d arrives, c is touched (same bytes), a broken PDF.
        new_b = "# Bravo\n\nThe orchard was replanted with pear trees; the press now makes perry."
        (folder / "b.md").write_text(new_b)
        (folder / "a.txt").unlink()
        _write(folder, "d.txt", "Delta: the river splits into channels before it meets the sea.")
        c_path = folder / "sub" / "c.txt"
        os.utime(c_path, ns=(c_path.stat().st_atime_ns, c_path.stat().st_mtime_ns + 10**9))
        broken = b"%PDF-1.7\nthis is not really a PDF\n"
        (folder / "broken.pdf").write_bytes(broken)

        report = _sync_now(http, schedule["id"])
        assert report["counts"] == {
            "added": 2,
            "replaced": 1,
            "removed": 1,
            "unchanged": 1,
            "failed": 1,
        }, report
        assert _paths(report["added"]) == ["broken.pdf", "d.txt"]
        assert _paths(report["replaced"]) == ["b.md"] and _paths(report["removed"]) == ["a.txt"]
        assert _paths(report["failed"]) == ["broken.pdf"] and report["failed"][0]["reason"]
        assert report["older_versions_detached"] == 1
        new_d = (folder / "d.txt").read_bytes()
        assert report["bytes_copied"] == len(new_b.encode()) + len(new_d) + len(broken)
        # Files whose stamp moved are hashed first: c.txt (touched) was read once and never
        # copied; b.md was read to hash it, then again to copy it.
        hashed = c_path.stat().st_size + len(new_b.encode())
        assert report["bytes_read"] == report["bytes_copied"] + hashed

        live = _live(http, store["id"])
        assert set(live) == {"b.md", "sub/c.txt", "d.txt", "broken.pdf"}
        assert live["broken.pdf"]["status"] == "failed"
        assert {p for p, f in live.items() if f["status"] == "completed"} == {
            "b.md",
            "sub/c.txt",
            "d.txt",
        }
        assert live["b.md"]["id"] != first_b
        assert live["b.md"]["attributes"]["sha256"] == hashlib.sha256(new_b.encode()).hexdigest()
        # The sync's own file objects leave with their store files.
        for gone in (first_a, first_b):
            assert http.get(f"/v1/files/{gone}").status_code == 404
        hits = ok(
            http.post(
                f"/v1/vector_stores/{store['id']}/search",
                json={"query": "apple orchard cider press in October", "max_num_results": 10},
            )
        )["data"]
        assert all(h["file_id"] != first_b for h in hits)

        # Nothing changed: nothing read, copied or ingested; the broken file is not retried
        # (a permanent failure with the same bytes would fail the same way).
        jobs_before = _ingest_jobs(http, store["id"])
        report = _sync_now(http, schedule["id"])
        assert report["counts"] == {
            "added": 0,
            "replaced": 0,
            "removed": 0,
            "unchanged": 3,
            "failed": 1,
        }, report
        assert report["bytes_read"] == 0 and report["bytes_copied"] == 0
        assert report["file_batch_id"] is None
        assert _ingest_jobs(http, store["id"]) == jobs_before
        assert set(_live(http, store["id"])) == {"b.md", "sub/c.txt", "d.txt", "broken.pdf"}

        # Every run is an ordinary job of the schedule.
        runs = ok(http.get(f"/v1/schedules/{schedule['id']}/runs"))["data"]
        assert len(runs) == 3 and {r["kind"] for r in runs} == {"source_sync"}
        assert all(r["scheduled_for"] is None for r in runs)  # started by hand

        # The folder empties (an unmounted share looks the same): the run fails, the store
        # keeps its files.
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file() or path.is_symlink():
                path.unlink()
        job = wait_job(http, ok(http.post(f"/v1/schedules/{schedule['id']}/run"))["id"])
        assert job["status"] == "failed" and "refusing" in job["error"]["message"]
        assert job["error"]["stage"] == "listing"
        assert set(_live(http, store["id"])) == {"b.md", "sub/c.txt", "d.txt", "broken.pdf"}


def test_s3_prefix_sync(service: Service, moto: MotoServer) -> None:
    s3 = moto.client()
    s3.put_object(Bucket=BUCKET, Key="team/docs/one.txt", Body=TEXTS["a.txt"].encode())
    s3.put_object(Bucket=BUCKET, Key="team/docs/two.md", Body=TEXTS["b.md"].encode())
    s3.put_object(Bucket=BUCKET, Key="team/docs/folder/", Body=b"")  # a folder marker
    s3.put_object(Bucket=BUCKET, Key="team/other/skip.txt", Body=b"not under the prefix")
    with service.http() as http:
        store = ok(http.post("/v1/vector_stores", json={"name": "from s3"}))
        schedule = ok(
            http.post(
                "/v1/schedules",
                json={
                    "kind": "source_sync",
                    "cron": "@daily",
                    "params": {
                        "vector_store_id": store["id"],
                        "source": f"s3://{BUCKET}/team/docs",
                    },
                },
            )
        )
        report = _sync_now(http, schedule["id"])
        assert report["counts"]["added"] == 2 and _paths(report["added"]) == ["one.txt", "two.md"]

        s3.put_object(Bucket=BUCKET, Key="team/docs/two.md", Body=b"# Two\n\nRewritten entirely.")
        s3.delete_object(Bucket=BUCKET, Key="team/docs/one.txt")
        report = _sync_now(http, schedule["id"])
        assert report["counts"] == {
            "added": 0,
            "replaced": 1,
            "removed": 1,
            "unchanged": 0,
            "failed": 0,
        }, report
        live = _live(http, store["id"])
        assert set(live) == {"two.md"} and live["two.md"]["status"] == "completed"

        report = _sync_now(http, schedule["id"])
        assert report["counts"]["unchanged"] == 1 and report["bytes_read"] == 0


def test_sources_outside_the_allowed_roots_are_refused(service: Service, roots: Path) -> None:
    with service.http() as http:
        store = ok(http.post("/v1/vector_stores", json={"name": "refusals"}))

        def create(source: str, store_id: str = store["id"]) -> httpx.Response:
            return http.post(
                "/v1/schedules",
                json={
                    "kind": "source_sync",
                    "cron": "@daily",
                    "params": {"vector_store_id": store_id, "source": source},
                },
            )

        for source in (
            "/etc",
            str(roots / ".."),
            "relative/path",
            f"{roots}-x",
            "s3://other-bucket/x",
            f"s3://{BUCKET}/teamwork",
            str(roots / "nope"),
        ):
            response = create(source)
            assert response.status_code == 400, (source, response.text)
            assert response.json()["error"]["param"] == "params.source"
        assert create(str(roots), "vs_missing").status_code == 404


def test_an_eval_follows_a_synced_store_as_its_sources_change(
    service: Service, roots: Path
) -> None:
    """The acceptance scenario in small: a kept-back eval set run against a store that a sync
    keeps in step with a folder. Right answers are named by their path in the folder."""
    folder = roots / "guides"
    docs = {
        "sea/tides.md": "Tide tables give the times of high and low water in each harbour.",
        "land/orchard.md": "Apple trees in the orchard are pruned in winter and picked in autumn.",
        "ice/glaciers.md": "Glaciers carve U-shaped valleys and leave moraines of rock behind.",
    }
    for rel, text in docs.items():
        _write(folder, rel, text)
    questions = [
        {
            "question": "When is high and low water in the harbour?",
            "expected_filenames": ["sea/tides.md"],
        },
        {
            "question": "When are apple trees pruned and picked?",
            "expected_filenames": ["land/orchard.md"],
        },
        {"question": "How do glaciers shape valleys?", "expected_filenames": ["ice/glaciers.md"]},
    ]
    with service.http() as http:
        store = ok(http.post("/v1/vector_stores", json={"name": "guides"}))
        sync = ok(
            http.post(
                "/v1/schedules",
                json={
                    "kind": "source_sync",
                    "cron": "0 1 * * *",
                    "params": {"vector_store_id": store["id"], "source": str(folder)},
                },
            )
        )
        evaluation = ok(
            http.post(
                "/v1/evals",
                json={
                    "name": "guides",
                    "data_source_config": {"type": "items", "items": questions},
                    "vector_store_id": store["id"],
                },
            )
        )
        nightly = ok(
            http.post(
                "/v1/schedules",
                json={
                    "kind": "eval_run",
                    "cron": "0 2 * * *",
                    "params": {"eval_id": evaluation["id"]},
                },
            )
        )

        def night() -> dict[str, Any]:
            _sync_now(http, sync["id"])
            job = wait_job(http, ok(http.post(f"/v1/schedules/{nightly['id']}/run"))["id"])
            assert job["status"] == "succeeded", job
            return ok(http.get(f"/v1/evals/{evaluation['id']}/runs/{job['eval_run_id']}"))

        def ranks(run: dict[str, Any]) -> list[int | None]:
            items = ok(
                http.get(
                    f"/v1/evals/{evaluation['id']}/runs/{run['id']}/output_items",
                    params={"limit": 100, "order": "asc"},
                )
            )["data"]
            by_no = sorted(items, key=lambda i: i["datasource_item_id"])
            return [i["results"][0]["rank"] for i in by_no]

        first = night()
        assert ranks(first) == [1, 1, 1]
        assert first["per_testing_criteria_results"][0]["metrics"]["mrr"] == pytest.approx(1.0)

        # The orchard guide leaves the folder; the next night the store and the figures follow.
        (folder / "land" / "orchard.md").unlink()
        second = night()
        assert set(_live(http, store["id"])) == {"sea/tides.md", "ice/glaciers.md"}
        assert second["changes"]["store"] is True and second["store"]["files"] == 2
        assert ranks(second) == [1, None, 1]
        metrics = second["per_testing_criteria_results"][0]["metrics"]
        assert metrics["hit_at_1"] == pytest.approx(2 / 3) and metrics["mrr"] == pytest.approx(
            2 / 3
        )
        diff = ok(http.get(f"/v1/evals/{evaluation['id']}/runs/{second['id']}/diff"))
        worst = diff["data"][0]
        assert (worst["datasource_item_id"], worst["change"]) == (1, "worse")

        # Nothing changes: the store is the same, and so are the figures.
        third = night()
        assert third["changes"] == {"store": False, "settings": False}
        assert ranks(third) == [1, None, 1]
