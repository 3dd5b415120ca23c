"""Hybrid vs vector-only search quality on the dev corpus: hit rate @1 and @3.

Starts its own embedded PostgreSQL, one API and two workers (tests/support), ingests the dev
corpus's good non-archive files into one vector store, then asks each question (the corpus
test's QUESTIONS plus this file's EXTRA_QUESTIONS, each answered by one document) under
several ranking settings and prints a table. A hit @k: the answer's file is among the first
k distinct documents of the top 10 results (as tests/integration/test_corpus.py counts).

Run: `python bench/hybrid_quality.py [--keep DIR]` (ingesting takes minutes on a laptop CPU;
with --keep, a rerun reuses the ingested store and only asks the questions again).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from test_corpus import QUESTIONS  # noqa: E402

from support.corpus import good_files  # noqa: E402
from support.postgres import TestPostgres  # noqa: E402
from support.service import Service  # noqa: E402

# Questions added for this benchmark; each answered by exactly one document of the corpus.
EXTRA_QUESTIONS = [
    ("port cross-connect PXC configuration in the classic CLI", "interface-config-guide-p93.pdf"),
    ("삼성카드 포인트 적립 유효기간", "korean-text-with-tables.pdf"),
    (
        "egg shell adsorption on stainless steel in sulfuric acid, Langmuir isotherm",
        "embedded-images-tables.pdf",
    ),
    (
        "LayoutParser: a unified toolkit for deep learning based document image analysis",
        "copy-protected.pdf",
    ),
    ("Call me Ishmael", "category-level.docx"),
    ("adding a bullet slide with _TextFrame.add_paragraph", "fake-power-point.pptx"),
    ("annual report on Form 10-K filed with the SEC", "example-10k.html"),
    ("information for people living with cancer about their treatment", "failure-after-repair.pdf"),
    (
        "GAO report on cybersecurity of federal agencies",
        "invalid-pdf-structure-pdfminer-one-page.pdf",
    ),
    ("Russian offensive campaign assessment", "example-with-scripts.html"),
    ("steel JIS datasheet", "example-steelJIS-datasheet-utf-16.html"),
]

SETTINGS: list[tuple[str, dict[str, Any] | None]] = [
    ("vector only", None),
    ("hybrid 1:1", {"embedding_weight": 1.0, "text_weight": 1.0}),
    ("hybrid 2:1", {"embedding_weight": 2.0, "text_weight": 1.0}),
    ("hybrid 1:2", {"embedding_weight": 1.0, "text_weight": 2.0}),
    ("text only", {"embedding_weight": 0.0, "text_weight": 1.0}),
]


def ingest(svc: Service) -> tuple[str, dict[str, str]]:
    client = svc.openai(timeout=600)
    names: dict[str, str] = {}
    for path in good_files():
        with path.open("rb") as fh:
            names[client.files.create(file=(path.name, fh), purpose="assistants").id] = path.name
    store = client.vector_stores.create(name="hybrid-bench")
    started = time.monotonic()
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=list(names), poll_interval_ms=2000
    )
    print(
        f"ingested {batch.file_counts.completed}/{len(names)} files "
        f"in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return store.id, names


def evaluate(svc: Service, store_id: str, names: dict[str, str]) -> list[tuple[str, float, float]]:
    questions = QUESTIONS + EXTRA_QUESTIONS
    rows = []
    with svc.http() as http:
        for label, hybrid in SETTINGS:
            hit1 = hit3 = 0
            for question, answer in questions:
                body: dict[str, Any] = {"query": question, "max_num_results": 10}
                if hybrid is not None:
                    body["ranking_options"] = {"hybrid_search": hybrid}
                response = http.post(f"/v1/vector_stores/{store_id}/search", json=body)
                response.raise_for_status()
                files: list[str] = []  # distinct documents, best first, as a reader sees them
                for hit in response.json()["data"]:
                    if names[hit["file_id"]] not in files:
                        files.append(names[hit["file_id"]])
                hit1 += files[:1] == [answer]
                hit3 += answer in files[:3]
                if files[:1] != [answer]:
                    print(f"{label}: miss @1 {question!r} → {files}", file=sys.stderr)
            rows.append((label, hit1 / len(questions), hit3 / len(questions)))
    return rows


def run(root: Path, workers: int) -> list[tuple[str, float, float]]:
    """Ingest once into `root` (state.json remembers it), then evaluate; a kept root is reused."""
    state_file = root / "state.json"
    pg = TestPostgres(root).start()
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    url = pg.url(state["database"]) if state else pg.new_database()
    svc = Service(url, root / "svc", workers=workers, extra_env={"PREPSHELF_TORCH_THREADS": "1"})
    try:
        svc.start()
        if state is None:
            store_id, names = ingest(svc)
            state = {"database": conninfo_to_dict(url)["dbname"], "store": store_id, "names": names}
            state_file.write_text(json.dumps(state))
        return evaluate(svc, state["store"], state["names"])
    finally:
        svc.stop()
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--keep", type=Path, help="keep the ingested corpus in this dir; reuse it when rerun"
    )
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows = run(args.keep, args.workers)
    else:
        with tempfile.TemporaryDirectory(prefix="hybrid-bench-") as tmp:
            rows = run(Path(tmp), args.workers)
    n = len(QUESTIONS) + len(EXTRA_QUESTIONS)
    print(f"\n{n} questions ({len(QUESTIONS)} from test_corpus.py + {len(EXTRA_QUESTIONS)} extra)")
    print(f"{'ranking':<14} {'hit@1':>7} {'hit@3':>7}")
    for label, h1, h3 in rows:
        print(f"{label:<14} {h1:>7.0%} {h3:>7.0%}")


if __name__ == "__main__":
    main()
