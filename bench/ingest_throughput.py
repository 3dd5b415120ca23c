"""Ingest throughput: the dev corpus through prepshelf against the raw model, side by side.

One run measures, on the same files:

1. **raw** — in this process, no service: parse every file (prepshelf's parsers, no sandbox),
   chunk it (the model's tokenizer, the `auto` strategy prepshelf uses) and encode all chunks
   with the same model and batch size (torch, all cores). This is the floor: what the work
   costs with nothing around it.
2. **prepshelf** — a real embedded PostgreSQL, the API and worker processes as `prepshelf
   serve` runs them; `prepshelf ingest DIR --store NAME --wait` uploads the files and follows
   the batch; the time is first upload → every file `completed` (read back from the job rows,
   so poll granularity does not count). The per-stage breakdown is summed over the jobs'
   `stage_durations` (parse, chunk, model, writes = embedding stage minus model time, indexing)
   and their queue wait (created → started).
3. **no-change re-ingest** — the same `prepshelf ingest` command again on the unchanged folder:
   seconds, and how many embeddings it computed (must be zero); then the same files uploaded
   again through the openai SDK into a second store (their chunks are copied, not recomputed).
4. optionally **peers** (`--peers`): bench/peers/run_peers.py in its own venv (LangChain's
   index() and LlamaIndex's IngestionPipeline on the same files and model), first run and
   no-change re-run.

Run: `python bench/ingest_throughput.py` (whole dev corpus minus bad/ and archives; minutes on
a laptop CPU). `--files N` takes the first N files for a smoke run; `--backend onnx-int8`
runs prepshelf with another local backend (the raw reference stays torch, the default);
`--json OUT` writes every figure. Targets (issue #8): prepshelf ≤ 1.1x raw with the default
backend; ≤ 0.5x LangChain with the optimised backend; re-ingest computes 0 embeddings, < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# As prepshelf's LocalEmbedder does: idle OpenMP threads sleep instead of spinning, which on a
# busy machine otherwise stalls every model call (same setting for the raw reference).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from prepshelf.pipeline.chunk import ChunkingStrategy, chunk_text  # noqa: E402
from prepshelf.pipeline.embed import default_model_dir  # noqa: E402
from prepshelf.pipeline.model_info import read_model_info  # noqa: E402
from prepshelf.pipeline.parse import parse_file  # noqa: E402
from prepshelf.pipeline.tokenizer import load_tokenizer  # noqa: E402
from support.corpus import good_files  # noqa: E402
from support.postgres import TestPostgres  # noqa: E402
from support.service import Service  # noqa: E402

PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


def raw_reference(files: list[Path], batch_size: int) -> dict[str, Any]:
    """Parse, chunk and encode in this process: the cost of the work with nothing around it."""
    from sentence_transformers import SentenceTransformer

    model_dir = default_model_dir()
    info = read_model_info(model_dir, "all-MiniLM-L6-v2")
    strategy = ChunkingStrategy(
        max_tokens=info.max_chunk_tokens, overlap_tokens=info.auto_overlap_tokens
    )
    tokenizer = load_tokenizer(model_dir)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.encode(["warm-up"], show_progress_bar=False)  # load cost is not per-corpus work
    parse_s = chunk_s = 0.0
    texts: list[str] = []
    failed: list[str] = []
    for path in files:
        started = time.perf_counter()
        try:
            doc = parse_file(path, path.name)
        except Exception as exc:  # a file prepshelf also fails: no chunks from it either
            failed.append(f"{path.name}: {exc}")
            continue
        parsed = time.perf_counter()
        texts += [c.text for c in chunk_text(doc.text, tokenizer, strategy)]
        parse_s += parsed - started
        chunk_s += time.perf_counter() - parsed
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    encode_s = time.perf_counter() - started
    total = parse_s + chunk_s + encode_s
    return {
        "files": len(files),
        "failed": failed,
        "chunks": len(texts),
        "parse_s": parse_s,
        "chunk_s": chunk_s,
        "encode_s": encode_s,
        "total_s": total,
        "encode_chunks_per_s": len(texts) / encode_s if encode_s else 0.0,
        "chunks_per_s": len(texts) / total if total else 0.0,
    }


def _ingest_cli(svc: Service, folder: Path, store: str) -> tuple[float, str]:
    """`prepshelf ingest` as a user runs it; returns (seconds, output)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prepshelf",
            "ingest",
            str(folder),
            "--store",
            store,
            "--wait",
            "--url",
            svc.base_url.removesuffix("/v1"),
            "--api-key",
            svc.api_key,
        ],
        env={**svc.env, "NO_COLOR": "1", "TERM": "dumb"},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # 1 = some file failed, reported below
        raise RuntimeError(f"prepshelf ingest failed ({proc.returncode}):\n{proc.stderr}")
    return seconds, proc.stdout + proc.stderr


def _job_figures(svc: Service, since: float) -> dict[str, Any]:
    """Stage seconds summed over the jobs created since `since` (epoch), and the wall time
    from `since` to the last job's finish."""
    with svc.db() as conn:
        rows = conn.execute(
            """SELECT status, stage_durations, embeddings_computed, embeddings_cached,
                      progress_total, extract(epoch FROM started_at - created_at) AS wait_s,
                      extract(epoch FROM finished_at) AS finished
               FROM jobs WHERE kind = 'ingest_file' AND created_at >= to_timestamp(%s)""",
            [since],
        ).fetchall()
    stages: dict[str, float] = {}
    for row in rows:
        for stage, seconds in (row["stage_durations"] or {}).items():
            stages[stage] = stages.get(stage, 0.0) + float(seconds)
    model_s = stages.pop("embedding.model", 0.0)
    # Waiting for the model while another file of the same worker uses it: not work.
    model_wait_s = stages.pop("embedding.wait", 0.0)
    finished = [float(r["finished"]) for r in rows if r["finished"] is not None]
    return {
        "jobs": len(rows),
        "succeeded": sum(r["status"] == "succeeded" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "chunks": sum(int(r["progress_total"] or 0) for r in rows if r["status"] == "succeeded"),
        "computed": sum(int(r["embeddings_computed"]) for r in rows),
        "cached": sum(int(r["embeddings_cached"]) for r in rows),
        "wall_s": (max(finished) - since) if finished else 0.0,
        "stages_s": {
            "queue wait": sum(float(r["wait_s"] or 0) for r in rows),
            "model wait": model_wait_s,
            "parse": stages.get("parsing", 0.0),
            "chunk": stages.get("chunking", 0.0),
            "model": model_s,
            "writes": stages.get("embedding", 0.0)
            - model_s
            - model_wait_s
            + stages.get("indexing", 0.0),
        },
    }


def run_prepshelf(
    files: list[Path], root: Path, workers: int, extra_env: dict[str, str]
) -> dict[str, Any]:
    folder = root / "corpus"
    folder.mkdir()
    for path in files:
        (folder / path.name).symlink_to(path.resolve())
    pg = TestPostgres(root / "pg").start()
    # As `prepshelf serve` does: the cores are split between the worker processes.
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    env = {"PREPSHELF_TORCH_THREADS": str(threads), **extra_env}
    svc = Service(pg.new_database(), root / "svc", workers=workers, extra_env=env)
    export_s = 0.0
    try:
        if env.get("PREPSHELF_LOCAL_BACKEND", "torch") != "torch":
            # The one-time export into the data dir is not per-corpus work: done before.
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from prepshelf.pipeline.embedders import build_embedder;"
                    "from prepshelf.settings import Settings; build_embedder(Settings()).load()",
                ],
                env=svc.env,
                check=True,
            )
            export_s = time.perf_counter() - started
        svc.start()
        since = time.time()
        cli_s, out = _ingest_cli(svc, folder, "bench")
        first = _job_figures(svc, since) | {"cli_s": cli_s}
        since = time.time()
        again_s, _ = _ingest_cli(svc, folder, "bench")
        again = _job_figures(svc, since) | {"cli_s": again_s}
        since = time.time()
        started = time.perf_counter()
        client = svc.openai(timeout=600)
        store = client.vector_stores.create(name="bench-copy")
        streams = [path.open("rb") for path in files]
        try:
            client.vector_stores.file_batches.upload_and_poll(
                vector_store_id=store.id, files=streams, poll_interval_ms=100
            )
        finally:
            for stream in streams:
                stream.close()
        copy = _job_figures(svc, since) | {"sdk_s": time.perf_counter() - started}
        return {
            "workers": workers,
            "env": env,
            "export_s": export_s,
            "first": first,
            "again": again,
            "copy": copy,
            "log": out,
        }
    finally:
        svc.stop()
        pg.stop()


def run_peers(files: list[Path], out: Path) -> dict[str, Any] | None:
    if not PEERS_PYTHON.exists():
        print("peers skipped: run `bash bench/peers/setup.sh` first", file=sys.stderr)
        return None
    corpus = out.parent / "peers-corpus"
    corpus.mkdir(exist_ok=True)
    for path in files:
        link = corpus / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    subprocess.run(
        [
            str(PEERS_PYTHON),
            str(ROOT / "bench" / "peers" / "run_peers.py"),
            "--corpus",
            str(corpus),
            "--json",
            str(out),
        ],
        check=True,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def report(raw: dict[str, Any] | None, ours: dict[str, Any], peers: dict[str, Any] | None) -> None:
    first, again = ours["first"], ours["again"]
    print(
        f"\nfiles: {first['jobs']} jobs, {first['succeeded']} completed, {first['failed']} failed"
    )
    if raw:
        print(
            f"raw (torch, in-process):   parse {raw['parse_s']:.1f} s + chunk {raw['chunk_s']:.1f}"
            f" s + encode {raw['encode_s']:.1f} s = {raw['total_s']:.1f} s; "
            f"{raw['chunks']} chunks, model {raw['encode_chunks_per_s']:.1f} chunks/s"
        )
    wall = first["wall_s"]
    print(
        f"prepshelf ({ours['workers']} worker(s), {ours['env']}): {wall:.1f} s upload → all "
        f"completed; {first['chunks']} chunks, {first['chunks'] / wall if wall else 0:.1f} "
        f"chunks/s; `prepshelf ingest --wait` {first['cli_s']:.1f} s"
    )
    if raw:
        print(f"  ratio prepshelf / raw: {_ratio(wall, raw['total_s'])} (target ≤ 1.1x)")
    print(
        "  seconds summed over jobs (files run in parallel, so these add up past the wall"
        " time; queue wait = files waiting their turn, model wait = for the other file's"
        " model call):"
    )
    for stage, seconds in first["stages_s"].items():
        print(f"    {stage:<11} {seconds:8.1f} s")
    print(f"  embeddings computed {first['computed']}, reused from cache {first['cached']}")
    print(
        f"no-change re-ingest: {again['cli_s']:.2f} s, {again['jobs']} jobs, "
        f"{again['computed']} embeddings computed (target 0 and < 5 s)"
    )
    copy = ours["copy"]
    print(
        f"same files uploaded again into a new store (SDK upload_and_poll): "
        f"{copy['sdk_s']:.1f} s, {copy['computed']} embeddings computed, "
        f"{copy['stages_s']['parse']:.1f} s parsing (copies of known bytes are not parsed)"
    )
    if peers:
        for result in peers.get("results", []):
            first_s, rerun = float(result["first"]["seconds"]), result["rerun"]
            vs_raw = _ratio(first_s, raw["total_s"]) if raw else "n/a"
            print(
                f"{result['peer']}: first run {first_s:.1f} s ({vs_raw} of raw; prepshelf takes "
                f"{_ratio(wall, first_s)} of its time); no-change re-run "
                f"{float(rerun['seconds']):.1f} s, re-embedded {rerun['embedded']} of "
                f"{result['first']['embedded']} chunks"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, help="only the first N files (smoke run)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes [1, as serve]")
    parser.add_argument("--batch-size", type=int, default=32, help="raw model batch size [32]")
    parser.add_argument("--backend", help="PREPSHELF_LOCAL_BACKEND for prepshelf's workers")
    parser.add_argument("--env", action="append", default=[], help="extra K=V for the service")
    parser.add_argument("--skip-raw", action="store_true", help="no raw reference")
    parser.add_argument("--peers", action="store_true", help="also run LangChain and LlamaIndex")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    files = good_files()[: args.files] if args.files else good_files()
    extra = dict(kv.split("=", 1) for kv in args.env)
    if args.backend:
        extra["PREPSHELF_LOCAL_BACKEND"] = args.backend
    raw = None if args.skip_raw else raw_reference(files, args.batch_size)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        ours = run_prepshelf(files, Path(tmp), args.workers, extra)
        peers = run_peers(files, Path(tmp) / "peers.json") if args.peers else None
    report(raw, ours, peers)
    if args.json:
        ours.pop("log", None)
        args.json.write_text(json.dumps({"raw": raw, "prepshelf": ours, "peers": peers}, indent=2))


if __name__ == "__main__":
    main()
