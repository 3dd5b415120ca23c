"""Local embedding backends side by side on the dev corpus: torch, onnx (float) and onnx-int8.

One run, in this process, no service:

1. parse and chunk the good non-archive files with prepshelf's own pipeline (parse_file, the
   model's tokenizer, the `auto` strategy ingest uses);
2. per backend: export/load time, then encode every chunk the way a worker does — one embed()
   call per `--call-rows` chunks of a file (ingest's checkpoint, 128), which sorts them by
   length into `--batch-size` batches — and again unsorted (one call per batch, in text
   order), to see what length-sorted batching is worth per backend. Chunks/s, CPU seconds
   and the ratio to torch are printed; with `--rounds N` the backends take turns N times and
   the fastest round counts (a shared machine is noisy);
3. retrieval quality per backend: each question of tests/integration/test_corpus.py plus
   bench/hybrid_quality.py's extra ones, embedded by the same backend, against all chunk
   vectors by exact cosine; hit @1/@3 = the answer's file among the first 1/3 distinct files
   (as the corpus test counts). Rows "docs X, queries torch" show a store ingested with X and
   searched by an API still on torch. Plus the mean and worst cosine of each backend's chunk
   vectors against torch's.

Run: `python bench/embed_backends.py` (whole corpus; minutes). `--files N` takes the N smallest
files for a smoke run (only questions answered by them are asked); `--threads`, `--batch-size`,
`--backends`, `--cache-dir DIR` (keep the ONNX exports between runs), `--json OUT`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration"), str(ROOT / "bench")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hybrid_quality import EXTRA_QUESTIONS  # noqa: E402
from test_corpus import QUESTIONS  # noqa: E402

from prepshelf.pipeline.chunk import ChunkingStrategy, chunk_text  # noqa: E402
from prepshelf.pipeline.embed import LocalEmbedder, default_model_dir  # noqa: E402
from prepshelf.pipeline.embed_onnx import OnnxEmbedder  # noqa: E402
from prepshelf.pipeline.model_info import read_model_info  # noqa: E402
from prepshelf.pipeline.parse import parse_file  # noqa: E402
from prepshelf.pipeline.tokenizer import load_tokenizer  # noqa: E402
from support.corpus import good_files  # noqa: E402

BACKENDS = ("torch", "onnx", "onnx-int8")


@dataclass
class Corpus:
    texts: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # file name of each chunk
    per_file: list[list[int]] = field(default_factory=list)  # chunk indexes, file by file
    tokens: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    parse_chunk_s: float = 0.0


def load_corpus(paths: Sequence[Path]) -> Corpus:
    model_dir = default_model_dir()
    info = read_model_info(model_dir, "all-MiniLM-L6-v2")
    strategy = ChunkingStrategy(info.max_chunk_tokens, info.auto_overlap_tokens)
    tokenizer = load_tokenizer(model_dir)
    corpus = Corpus()
    started = time.perf_counter()
    for path in paths:
        try:
            doc = parse_file(path, path.name)
        except Exception as exc:  # a file prepshelf fails too: no chunks from it either
            corpus.failed.append(f"{path.name}: {exc}")
            continue
        chunks = chunk_text(doc.text, tokenizer, strategy)
        first = len(corpus.texts)
        corpus.per_file.append(list(range(first, first + len(chunks))))
        for c in chunks:
            corpus.texts.append(c.text)
            corpus.files.append(path.name)
            corpus.tokens.append(c.token_count)
    corpus.parse_chunk_s = time.perf_counter() - started
    return corpus


def make_embedder(backend: str, args: argparse.Namespace, cache_dir: Path) -> LocalEmbedder:
    if backend == "torch":
        return LocalEmbedder(batch_size=args.batch_size, threads=args.threads)
    return OnnxEmbedder(
        cache_dir=cache_dir,
        variant=backend,  # type: ignore[arg-type]
        batch_size=args.batch_size,
        threads=args.threads,
    )


def calls(corpus: Corpus, size: int) -> list[list[int]]:
    """embed() calls as a worker makes them: per file, `size` chunks at a time, in order."""
    return [rows[i : i + size] for rows in corpus.per_file for i in range(0, len(rows), size)]


def timed_encode(
    embed: Callable[[list[str]], np.ndarray], corpus: Corpus, groups: list[list[int]]
) -> tuple[np.ndarray, float, float]:
    out = np.empty((len(corpus.texts), 384), dtype=np.float32)
    wall, cpu = time.perf_counter(), time.process_time()
    for rows in groups:
        out[rows] = embed([corpus.texts[i] for i in rows])
    return out, time.perf_counter() - wall, time.process_time() - cpu


def hits(
    chunk_vectors: np.ndarray,
    query_vectors: np.ndarray,
    corpus: Corpus,
    questions: Sequence[tuple[str, str]],
) -> tuple[float, float, list[str]]:
    """Hit rate @1 and @3 by distinct file over the top 10 chunks, and the @1 misses."""
    scores = query_vectors @ chunk_vectors.T
    h1 = h3 = 0
    misses = []
    for (question, answer), row in zip(questions, scores, strict=True):
        top: list[str] = []
        for i in np.argsort(-row, kind="stable")[:10]:
            if corpus.files[i] not in top:
                top.append(corpus.files[i])
        h1 += top[:1] == [answer]
        h3 += answer in top[:3]
        if top[:1] != [answer]:
            misses.append(f"{question!r} → {top[:3]}")
    n = max(1, len(questions))
    return h1 / n, h3 / n, misses


def run(args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    paths = good_files()
    if args.files:
        paths = sorted(paths, key=lambda p: p.stat().st_size)[: args.files]
    corpus = load_corpus(paths)
    names = {p.name for p in paths} - {f.split(":")[0] for f in corpus.failed}
    questions = [(q, a) for q, a in QUESTIONS + EXTRA_QUESTIONS if a in names]
    print(
        f"{len(paths)} files ({len(corpus.failed)} failed), {len(corpus.texts)} chunks, "
        f"{np.mean(corpus.tokens):.0f} tokens/chunk on average, parse+chunk "
        f"{corpus.parse_chunk_s:.1f} s; {len(questions)} questions",
        file=sys.stderr,
    )
    embedders: dict[str, LocalEmbedder] = {}
    results: dict[str, dict[str, Any]] = {}
    for backend in args.backends:
        embedder = make_embedder(backend, args, cache_dir)
        started = time.perf_counter()
        embedder.load()
        embedder.embed(corpus.texts[: args.batch_size * 2] or ["warm-up"])  # first-call costs
        embedders[backend] = embedder
        results[backend] = {"load_s": time.perf_counter() - started, "runs": []}
        print(f"{backend}: export/load {results[backend]['load_s']:.1f} s", file=sys.stderr)
    sorted_calls = calls(corpus, args.call_rows)
    unsorted_calls = calls(corpus, args.batch_size)
    vectors: dict[str, np.ndarray] = {}
    for round_no in range(args.rounds):
        for backend, embedder in embedders.items():
            vec, wall, cpu = timed_encode(embedder.embed, corpus, sorted_calls)
            run_fig: dict[str, float] = {"sorted_s": wall, "sorted_cpu_s": cpu}
            if not args.no_unsorted:
                _, wall_u, cpu_u = timed_encode(embedder.embed, corpus, unsorted_calls)
                run_fig |= {"unsorted_s": wall_u, "unsorted_cpu_s": cpu_u}
            results[backend]["runs"].append(run_fig)
            vectors[backend] = vec
            print(f"round {round_no + 1} {backend}: {run_fig}", file=sys.stderr)
    n = len(corpus.texts)
    query_texts = [q for q, _ in questions]
    torch_queries = embedders["torch"].embed(query_texts) if "torch" in embedders else None
    for backend, embedder in embedders.items():
        r = results[backend]
        best = min(r["runs"], key=lambda f: f["sorted_s"])
        r |= {k: v for k, v in best.items()}
        r["chunks_per_s"] = n / best["sorted_s"]
        if "unsorted_s" in best:
            r["unsorted_chunks_per_s"] = n / min(f["unsorted_s"] for f in r["runs"])
        h1, h3, misses = hits(vectors[backend], embedder.embed(query_texts), corpus, questions)
        r |= {"hit1": h1, "hit3": h3, "misses": misses}
        if "torch" in vectors:
            cos = (vectors[backend] * vectors["torch"]).sum(axis=1)
            r |= {"cos_vs_torch_mean": float(cos.mean()), "cos_vs_torch_min": float(cos.min())}
            if backend != "torch" and torch_queries is not None:
                h1, h3, _ = hits(vectors[backend], torch_queries, corpus, questions)
                r |= {"hit1_torch_queries": h1, "hit3_torch_queries": h3}
    return {
        "files": len(paths),
        "failed": corpus.failed,
        "chunks": n,
        "mean_tokens": float(np.mean(corpus.tokens)) if corpus.tokens else 0.0,
        "questions": len(questions),
        "batch_size": args.batch_size,
        "call_rows": args.call_rows,
        "threads": args.threads,
        "rounds": args.rounds,
        "backends": results,
    }


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def report(res: dict[str, Any]) -> None:
    b = res["backends"]
    torch_cps = b.get("torch", {}).get("chunks_per_s")
    torch_cpu = b.get("torch", {}).get("sorted_cpu_s")
    print(
        f"\n{res['chunks']} chunks from {res['files']} files, {res['mean_tokens']:.0f} tokens "
        f"on average; batch {res['batch_size']}, {res['call_rows']} chunks per embed() call, "
        f"threads {res['threads'] or 'default'}, best of {res['rounds']} round(s); "
        "cpu x = torch's CPU seconds / this backend's (steadier than wall time when the "
        "machine is shared)"
    )
    head = (
        f"{'backend':<10} {'load s':>7} {'chunks/s':>9} {'vs torch':>9} {'cpu s':>7} {'cpu x':>6} "
        f"{'unsorted/s':>11} {'sort gain':>10} {'cos mean':>9} {'cos min':>8}"
    )
    print(head)
    for name, r in b.items():
        print(
            f"{name:<10} {r['load_s']:>7.1f} {r['chunks_per_s']:>9.1f} "
            f"{_ratio(r['chunks_per_s'], torch_cps):>9} {r['sorted_cpu_s']:>7.1f} "
            f"{_ratio(torch_cpu, r['sorted_cpu_s']):>6} "
            f"{r.get('unsorted_chunks_per_s', 0):>11.1f} "
            f"{_ratio(r['chunks_per_s'], r.get('unsorted_chunks_per_s')):>10} "
            f"{r.get('cos_vs_torch_mean', float('nan')):>9.5f} "
            f"{r.get('cos_vs_torch_min', float('nan')):>8.5f}"
        )
    print(f"\n{res['questions']} questions, exact cosine search over all chunks")
    print(f"{'docs / queries':<28} {'hit@1':>6} {'hit@3':>6}")
    for name, r in b.items():
        print(f"{name + ' / ' + name:<28} {r['hit1']:>6.0%} {r['hit3']:>6.0%}")
        if "hit1_torch_queries" in r:
            label = f"{name} / torch"
            print(f"{label:<28} {r['hit1_torch_queries']:>6.0%} {r['hit3_torch_queries']:>6.0%}")
    for name, r in b.items():
        for miss in r["misses"]:
            print(f"  {name} miss @1: {miss}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, help="the N smallest good files (smoke run)")
    parser.add_argument("--threads", type=int, help="model threads (default: the library's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--call-rows", type=int, default=128, help="chunks per embed() call")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated, torch first"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-unsorted", action="store_true", help="skip the unsorted pass")
    parser.add_argument("--cache-dir", type=Path, help="keep ONNX exports here (reused)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(args.backends) - set(BACKENDS):
        parser.error(f"unknown backends {sorted(unknown)}")
    if args.cache_dir:
        res = run(args, args.cache_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="embed-backends-") as tmp:
            res = run(args, Path(tmp))
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
