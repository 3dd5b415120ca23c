"""Many small files and many short inputs: prepshelf against the raw model, side by side.

One run measures, on the same generated texts and the same model (all-MiniLM-L6-v2, torch):

1. **one-paragraph files** (default 10,000, `--files`): every text uploaded through the
   official openai SDK's `vector_stores.file_batches.upload_and_poll` into one store; the time
   is first upload → every file `completed` (the SDK's wall time, and batch creation → the
   last job's `finished_at` from the job rows, so poll granularity does not count).
2. **two-page files** (default 1,000, `--pages-files`): the same, into another store.
3. **/v1/batches** (default 100,000 short inputs, `--lines`): one JSONL input file of
   `/v1/embeddings` requests, `batches.create`, polled to a final status; output lines counted.

Each is compared with the **raw** reference measured in this process in the same run:
sentence-transformers encoding exactly the same texts (files: the chunks prepshelf's `auto`
chunking cuts from them, with the model's tokenizer; batches: the inputs as given), batch size
32, all cores. The per-stage split sums the jobs' `stage_durations` (parse, chunk, model,
writes = embedding stage minus model time, indexing) and their queue wait; files run in
parallel on the worker, so the sums exceed the wall time.

Run: `python bench/small_files.py` (full size: tens of minutes on a 2-core laptop);
`python bench/small_files.py --files 1000 --pages-files 100 --lines 10000` for a smaller run;
`--skip-batches` / `--skip-files`; `--workers N`; `--env PREPSHELF_X=value` (e.g. the
settings of an earlier version, for a before/after); `--json OUT` writes every figure. The
machine's other load shows up in both sides alike; read the ratios, not the seconds.
Targets (issue #18): 10,000 one-paragraph files within 1.5x the raw model's time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as prepshelf's LocalEmbedder does

from prepshelf.pipeline.chunk import ChunkingStrategy, chunk_text  # noqa: E402
from prepshelf.pipeline.embed import default_model_dir  # noqa: E402
from prepshelf.pipeline.model_info import read_model_info  # noqa: E402
from prepshelf.pipeline.tokenizer import load_tokenizer  # noqa: E402
from support.postgres import TestPostgres  # noqa: E402
from support.service import Service  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
_WORD_TEXT = """ticket customer order refund delivery account password invoice shipping support
agent reply issue priority escalation billing subscription login error page browser mobile app
update version release note feature request bug crash timeout network server database backup
restore export import report dashboard chart filter search result record field value status
pending resolved closed reopened assigned team queue"""
WORDS = _WORD_TEXT.split()


def paragraph(rng: random.Random, n_words: int, serial: int) -> str:
    """A distinct paragraph (serial first: identical bytes would be copied, not embedded)."""
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return f"Record {serial}. " + " ".join(words).capitalize() + "."


def make_texts(count: int, words: int, paragraphs: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "\n\n".join(paragraph(rng, words, i * 100 + p) for p in range(paragraphs))
        for i in range(count)
    ]


class Raw:
    """The raw model in this process: the cost of the work with nothing around it."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        model_dir = default_model_dir()
        info = read_model_info(model_dir, MODEL)
        self.strategy = ChunkingStrategy(
            max_tokens=info.max_chunk_tokens, overlap_tokens=info.auto_overlap_tokens
        )
        self.tokenizer = load_tokenizer(model_dir)
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.model.encode(["warm-up"], show_progress_bar=False)  # load cost is not per-run

    def files(self, texts: list[str]) -> dict[str, Any]:
        started = time.perf_counter()
        chunks = [c.text for t in texts for c in chunk_text(t, self.tokenizer, self.strategy)]
        chunk_s = time.perf_counter() - started
        return {"chunks": len(chunks), "chunk_s": chunk_s} | self.encode(chunks)

    def encode(self, texts: list[str]) -> dict[str, Any]:
        started = time.perf_counter()
        self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        encode_s = time.perf_counter() - started
        return {"inputs": len(texts), "encode_s": encode_s}


def _tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of a process, its children that exited, and its live descendants."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
        if p.pid == proc.pid:
            total += t.children_user + t.children_system
    return total


def cpu_split(svc: Service, pg_root: Path) -> dict[str, float]:
    """CPU seconds so far of each part: the API, the workers, PostgreSQL, this process (the
    SDK client and the raw reference). Differences of two calls say what a run cost."""
    split = {"api": 0.0, "workers": 0.0, "postgres": 0.0}
    if svc.api is not None:
        split["api"] = _tree_cpu(psutil.Process(svc.api.pid))
    split["workers"] = sum(_tree_cpu(psutil.Process(w.pid)) for w in svc.workers)
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "postgres" and str(pg_root) in " ".join(p.info["cmdline"] or []):
            split["postgres"] = _tree_cpu(p)  # the postmaster: its backends are its children
            break
    me = os.times()
    split["client"] = me.user + me.system
    return split


def job_figures(svc: Service, batch_ids: list[str], since: float) -> dict[str, Any]:
    """Jobs of these batches: counts, summed stage seconds, and `since` → last finished_at."""
    with svc.db() as conn:
        rows = conn.execute(
            """SELECT status, stage_durations, progress_total,
                      extract(epoch FROM started_at - created_at) AS wait_s,
                      extract(epoch FROM finished_at) AS finished,
                      extract(epoch FROM created_at) AS created
               FROM jobs WHERE file_batch_id = ANY(%s) OR batch_id = ANY(%s)""",
            [batch_ids, batch_ids],
        ).fetchall()
    stages: dict[str, float] = {}
    for row in rows:
        for stage, seconds in (row["stage_durations"] or {}).items():
            stages[stage] = stages.get(stage, 0.0) + float(seconds)
    model_s = stages.pop("embedding.model", 0.0)
    model_wait_s = stages.pop("embedding.wait", 0.0)
    finished = [float(r["finished"]) for r in rows if r["finished"] is not None]
    split = {
        "queue wait": sum(float(r["wait_s"] or 0) for r in rows),
        "model wait": model_wait_s,
        "parse": stages.pop("parsing", 0.0),
        "chunk": stages.pop("chunking", 0.0),
        "model": model_s,
        "writes": stages.pop("embedding", 0.0)
        - model_s
        - model_wait_s
        + stages.pop("indexing", 0.0),
    }
    split.update(stages)  # any other stage a job kind reports
    return {
        "jobs": len(rows),
        "succeeded": sum(r["status"] == "succeeded" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "last_finished_s": (max(finished) - since) if finished else 0.0,
        # Before the first job exists, the SDK uploads every file (upload_and_poll).
        "uploads_s": (min(float(r["created"]) for r in rows) - since) if rows else 0.0,
        "stages_s": split,
    }


BATCH_MAX_FILES = 2000  # the API's limit of file ids per file batch


def run_files(svc: Service, pg_root: Path, texts: list[str], name: str) -> dict[str, Any]:
    """All texts into one store: `upload_and_poll` per group of at most 2,000 files (the
    API's limit per file batch), the groups at once, as a client with 10,000 files would."""
    client = svc.openai(timeout=600)
    store = client.vector_stores.create(name=name)
    streams = [(f"{name}-{i:06d}.txt", io.BytesIO(t.encode())) for i, t in enumerate(texts)]
    groups = [streams[i : i + BATCH_MAX_FILES] for i in range(0, len(streams), BATCH_MAX_FILES)]

    def one_batch(files: list[tuple[str, io.BytesIO]]) -> Any:
        return client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=store.id, files=files, poll_interval_ms=200, max_concurrency=8
        )

    since = time.time()
    cpu_before = cpu_split(svc, pg_root)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(groups) or 1) as pool:
        batches = list(pool.map(one_batch, groups))
    sdk_s = time.perf_counter() - started
    cpu_after = cpu_split(svc, pg_root)
    jobs = job_figures(svc, [b.id for b in batches], since)
    counts: dict[str, int] = {}
    for batch in batches:
        for key, value in batch.file_counts.model_dump().items():
            counts[key] = counts.get(key, 0) + value
    return {
        "status": ",".join(sorted({b.status for b in batches})),
        "counts": counts,
        "sdk_s": sdk_s,
        "cpu_s": {k: cpu_after[k] - cpu_before[k] for k in cpu_after},
    } | jobs


def run_batches(svc: Service, inputs: list[str]) -> dict[str, Any]:
    client = svc.openai(timeout=600)
    lines = [
        json.dumps(
            {
                "custom_id": f"r-{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": MODEL, "input": text},
            }
        )
        for i, text in enumerate(inputs)
    ]
    data = ("\n".join(lines) + "\n").encode()
    since = time.time()
    started = time.perf_counter()
    f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    wall_s = time.perf_counter() - started
    counts = batch.request_counts.model_dump() if batch.request_counts else {}
    return {"status": batch.status, "counts": counts, "sdk_s": wall_s} | job_figures(
        svc, [batch.id], since
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def report_files(label: str, raw: dict[str, Any], ours: dict[str, Any]) -> None:
    raw_s = raw["chunk_s"] + raw["encode_s"]
    print(
        f"\n{label}: {ours['jobs']} jobs, {ours['succeeded']} succeeded, {ours['failed']} failed"
        f" (batch {ours['status']}, {ours['counts']})"
    )
    print(
        f"  raw: chunk {raw['chunk_s']:.1f} s + encode {raw['encode_s']:.1f} s = {raw_s:.1f} s"
        f" ({raw['chunks']} chunks)"
    )
    print(
        f"  prepshelf: SDK upload_and_poll {ours['sdk_s']:.1f} s; first upload → last job"
        f" finished {ours['last_finished_s']:.1f} s, of which uploads before the batch"
        f" {ours['uploads_s']:.1f} s"
    )
    print(
        f"  ratio prepshelf / raw: {_ratio(ours['last_finished_s'], raw_s)} (jobs),"
        f" {_ratio(ours['sdk_s'], raw_s)} (SDK wall)"
    )
    print("  seconds summed over jobs:")
    for stage, seconds in ours["stages_s"].items():
        print(f"    {stage:<11} {seconds:8.1f} s")
    cpu = ours["cpu_s"]
    print("  CPU seconds during the run: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))


def enable_statements(pg: TestPostgres) -> TestPostgres:
    """Restart the server with pg_stat_statements loaded (for `--statements`)."""
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    pg.stop()
    return pg.start()


def top_statements(url: str, limit: int = 25) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            """SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
                      round(mean_exec_time::numeric, 3) AS mean_ms, rows,
                      left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
               FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s""",
            [limit],
        ).fetchall()


def report_batches(raw: dict[str, Any], ours: dict[str, Any]) -> None:
    print(
        f"\n/v1/batches: {raw['inputs']} inputs, batch {ours['status']} {ours['counts']},"
        f" {ours['jobs']} job(s)"
    )
    print(f"  raw encode {raw['encode_s']:.1f} s ({raw['inputs'] / raw['encode_s']:.0f} inputs/s)")
    print(
        f"  prepshelf upload → final {ours['sdk_s']:.1f} s"
        f" ({raw['inputs'] / ours['sdk_s']:.0f} inputs/s);"
        f" ratio {_ratio(ours['sdk_s'], raw['encode_s'])}"
    )
    print("  seconds summed over jobs:")
    for stage, seconds in ours["stages_s"].items():
        print(f"    {stage:<11} {seconds:8.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="one-paragraph files [10000]")
    parser.add_argument("--pages-files", type=int, default=1_000, help="two-page files [1000]")
    parser.add_argument("--lines", type=int, default=100_000, help="/v1/batches inputs [100000]")
    parser.add_argument("--workers", type=int, default=1, help="worker processes [1]")
    parser.add_argument("--skip-files", action="store_true")
    parser.add_argument("--skip-batches", action="store_true")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--statements", action="store_true", help="print PostgreSQL's top statements (profiling)"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="PREPSHELF_X=value for the service"
    )
    args = parser.parse_args()

    small = make_texts(args.files, 70, 1, seed=1)
    # Two pages ≈ 1,000 words: eight paragraphs of 125 words.
    pages = make_texts(args.pages_files, 125, 8, seed=2)
    inputs = [f"line {i}: " + paragraph(random.Random(i), 10, i) for i in range(args.lines)]
    raw = Raw()
    out: dict[str, Any] = {"sizes": vars(args) | {"json": None}}
    with tempfile.TemporaryDirectory(prefix="small-files-") as tmp:
        pg_root = Path(tmp) / "pg"
        pg = TestPostgres(pg_root).start()
        if args.statements:
            pg = enable_statements(pg)
        database = pg.new_database()
        if args.statements:
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
        threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
        svc = Service(
            database,
            Path(tmp) / "svc",
            workers=args.workers,
            extra_env={
                "PREPSHELF_TORCH_THREADS": str(threads),
                **dict(e.split("=", 1) for e in args.env),
            },
        )
        try:
            svc.start()
            if not args.skip_files:
                if small:
                    out["small_raw"] = raw.files(small)
                    out["small"] = run_files(svc, pg_root, small, "small")
                    report_files("one-paragraph files", out["small_raw"], out["small"])
                if pages:
                    out["pages_raw"] = raw.files(pages)
                    out["pages"] = run_files(svc, pg_root, pages, "pages")
                    report_files("two-page files", out["pages_raw"], out["pages"])
            if not args.skip_batches and inputs:
                out["batches_raw"] = raw.encode(inputs)
                out["batches"] = run_batches(svc, inputs)
                report_batches(out["batches_raw"], out["batches"])
            if args.statements:
                print("\nPostgreSQL's top statements by execution time:")
                for row in top_statements(database):
                    print(
                        f"  {row['calls']:>7} calls {row['total_ms']:>9} ms"
                        f" ({row['mean_ms']} ms each, {row['rows']} rows) {row['query']}"
                    )
        finally:
            svc.stop()
            pg.stop()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
