"""kill -9 chaos: random busy workers SIGKILLed while a mixed corpus subset ingests.

Afterwards every file is completed with exactly the chunks a clean run computes, no row is
duplicated, no job is left running, and the interrupted jobs show more than one attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faults.helpers import kill9, upload
from prepshelf.pipeline.chunk import ChunkingStrategy, chunk_text
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.parse import parse_file
from prepshelf.pipeline.tokenizer import load_tokenizer
from support.corpus import good_files, needs_corpus
from support.service import FAST_RECOVERY, REAL_MODEL, Service

pytestmark = [needs_corpus]

WANTED = [
    "GeoTopo-komprimiert.pdf",
    "fr_olap.pdf",
    "multi-column-2p.pdf",
    "a1977-backus-p21.pdf",
    "pdflatex-4-pages.pdf",
    "mistitled_outlines_example.pdf",
    "example-with-scripts.html",
    "project-governance.md",
    "contains-pictures.docx",
    "sample-presentation.pptx",
]
KILLS = 3


@pytest.fixture(scope="module")
def svc(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "PREPSHELF_TORCH_THREADS": "1",
        **FAST_RECOVERY,
        "PREPSHELF_MAX_ATTEMPTS": "6",  # 3 kills can hit the same file 3 times
        # The real model: with the fake one the batch can end before three kills land.
        **REAL_MODEL,
    }
    with Service(
        database_url, Path(tmp_path_factory.mktemp("chaos")), workers=2, extra_env=env
    ) as service:
        yield service


def _busy_workers(svc: Service) -> list[Any]:
    with svc.db() as db:
        rows = db.execute("SELECT worker FROM jobs WHERE status = 'running'").fetchall()
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in rows if r["worker"]}
    return [p for p in svc.workers if p.pid in pids and p.poll() is None]


def test_kill9_chaos(svc: Service) -> None:
    available = {p.name: p for p in good_files()}
    names = [n for n in WANTED if n in available]
    assert "GeoTopo-komprimiert.pdf" in names and len(names) >= 8
    rng = random.Random(1234)
    with svc.http() as http:
        store = http.post("/v1/vector_stores", json={"name": "chaos"}).json()["id"]
        ids = {}
        for name in names:
            resp = upload(http, available[name].read_bytes(), name)
            assert resp.status_code == 200, resp.text
            ids[resp.json()["id"]] = name
        batch = http.post(
            f"/v1/vector_stores/{store}/file_batches", json={"file_ids": list(ids)}
        ).json()

        killed = 0
        deadline = time.monotonic() + 240
        while killed < KILLS and time.monotonic() < deadline:
            busy = _busy_workers(svc)
            if not busy:
                time.sleep(0.2)
                continue
            kill9(rng.choice(busy))
            killed += 1
            svc.start_worker()
            time.sleep(4)
        assert killed == KILLS, svc.logs()

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            b = http.get(f"/v1/vector_stores/{store}/file_batches/{batch['id']}").json()
            if b["status"] != "in_progress":
                break
            time.sleep(0.5)
        assert b["file_counts"]["completed"] == len(names), (b, svc.logs())
        strategy = http.get(f"/v1/vector_stores/{store}/files/{next(iter(ids))}").json()[
            "chunking_strategy"
        ]["static"]

    tokenizer = load_tokenizer(default_model_dir())
    plan = ChunkingStrategy(strategy["max_chunk_size_tokens"], strategy["chunk_overlap_tokens"])
    with svc.db() as db:
        for file_id, name in ids.items():
            rows = db.execute(
                "SELECT chunk_index, text, embedding IS NOT NULL AS embedded FROM chunks "
                "WHERE vector_store_id = %s AND file_id = %s ORDER BY chunk_index",
                [store, file_id],
            ).fetchall()
            expected = chunk_text(parse_file(available[name], name).text, tokenizer, plan)
            assert [r["text"] for r in rows] == [c.text for c in expected], name
            assert [r["chunk_index"] for r in rows] == list(range(len(rows)))
            assert all(r["embedded"] for r in rows), name
        jobs = db.execute("SELECT * FROM jobs WHERE vector_store_id = %s", [store]).fetchall()
        vsf = db.execute(
            "SELECT count(*) AS n FROM vector_store_files WHERE vector_store_id = %s", [store]
        ).fetchone()
    assert vsf["n"] == len(names)
    assert len(jobs) == len(names)  # one job per file: kills requeue, never duplicate
    assert all(j["status"] == "succeeded" for j in jobs)
    interrupted = [j for j in jobs if any("worker lost" in a["outcome"] for a in j["attempt_log"])]
    assert interrupted, "no job was interrupted by the kills"
    assert all(j["attempts"] > 1 for j in interrupted)
    for j in jobs:
        assert j["embeddings_computed"] + j["embeddings_cached"] == j["progress_total"]
