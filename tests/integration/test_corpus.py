"""The whole dev corpus through the official SDK: every good file completes, every bad one
fails with a fitting code and a message naming the file, and questions find their document.

The whole corpus runs on the suite's fake embedder (parsing, OCR, archives, counts and
errors do not depend on the model). Retrieval is about the model: the questions are asked of
a second store, embedded by the real model, that holds every document a question is about
and every other good file under 200 KB as distractors (the large ones cost minutes to
embed and answer no question)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.corpus import CORPUS, bad_files, good_files, needs_corpus
from support.postgres import TestPostgres as Postgres  # not collected as a test class
from support.service import REAL_MODEL, Service

pytestmark = [needs_corpus, pytest.mark.slow]

# (file under bad/, expected code, words the message must contain)
EXPECTED_FAILURES = {
    "CantinaBand3.txt": ("unsupported_file", "wav audio: audio and video are transcribed"),
    "doc-word-default-blank.docx": ("invalid_file", "no extractable text"),
    "empty.pdf": ("invalid_file", "empty"),
    "fake-text-all-whitespace.txt": ("invalid_file", "no extractable text"),
    # Since OCR (issue 15) the fax "scan" is OCR'd: it is a 16 × 16 smiley with no text.
    "imagemagick-CCITTFaxDecode.pdf": ("invalid_file", "no text found by ocr"),
    "libreoffice-writer-password.pdf": ("invalid_file", "encrypted"),
    "mangled-utf8-roundtrip.pdf": ("invalid_file", "corrupt"),
    "pdflatex-outline-truncated.pdf": ("invalid_file", "corrupt"),
    "r2-user-password.pdf": ("invalid_file", "encrypted"),
    "r4-aes-user-password.pdf": ("invalid_file", "encrypted"),
    # A PNG named .pdf is read as the image it is (sniffed by content): the smiley has no text.
    "smile.pdf": ("invalid_file", "no text found by ocr"),
    "zip-traversal.zip": ("invalid_file", "all 4 members refused"),
    "zip-bomb-1gib.zip": ("invalid_file", "uncompressed-size limit"),
    "nested-zip-40-levels.zip": ("invalid_file", "nesting limit"),
}
# Under bad/ in the corpus but complete since OCR (issue 15): the manifest's "no text layer"
# scan is read by Tesseract. The shared MANIFEST still says "expect: failed"; the corpus is
# read-only here, so the expectation changes in code.
NOW_COMPLETE = {"loremipsum-flat.pdf"}

# Members of the good archives (all complete) and of the nested chain (level1..3.zip, failed):
# members join their archive's batch, so batch counts include them (see test_archives.py).
GOOD_MEMBERS = 5 + 4 + 3
NESTED_MEMBERS = 3

# Questions each answered by one document of the corpus.
QUESTIONS = [
    ("how do you get new ideas? notice anomalies", "ideas-page.html"),
    ("fenced code blocks and backtick code spans in the markdown spec", "commonmark-spec.md"),
    ("duties of the chapter 13 standing trustee", "handbook-872p.docx"),
    (
        "Internal Revenue Manual procedures for IRS examiners",
        "pdf2image-memory-error-test-400p.pdf",
    ),
    ("dense passage retrieval for open-domain question answering", "multi-column-2p.pdf"),
    ("here's to the crazy ones, the misfits, the rebels", "crazyones-pdfa.pdf"),
    ("beautiful is better than ugly, explicit is better than implicit", "shifted-xref-offsets.pdf"),
    ("can programming be liberated from the von Neumann style", "a1977-backus-p21.pdf"),
    (
        "all human beings are born free and equal in dignity and rights",
        "UDHR_first_article_all.txt",
    ),
    (
        "uniting and strengthening America by providing tools to intercept terrorism",
        "fake-html-pre.htm",
    ),
    ("Stanley Cup champions hockey team", "stanley-cups-with-emoji.csv"),
    ("entrepôts de données et analyse OLAP multidimensionnelle", "fr_olap.pdf"),
]


@pytest.fixture(scope="module")
def corpus_service(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    with Service(
        database_url,
        tmp_path_factory.mktemp("corpus"),
        workers=2,
    ) as svc:
        yield svc


DISTRACTOR_MAX_BYTES = 200 * 1024


@pytest.fixture(scope="module")
def retrieval(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, str]]:
    """The real model over the questions' documents and the small good files."""
    svc = Service(
        postgres.new_database(), tmp_path_factory.mktemp("retrieval"), extra_env=REAL_MODEL
    )
    try:
        svc.start()
        answers = {expected for _, expected in QUESTIONS}
        paths = [
            p for p in good_files() if p.name in answers or p.stat().st_size <= DISTRACTOR_MAX_BYTES
        ]
        client = svc.openai()
        vs = client.vector_stores.create(name="retrieval")
        handles = [p.open("rb") for p in paths]
        try:
            batch = client.vector_stores.file_batches.upload_and_poll(
                vector_store_id=vs.id, files=handles, max_concurrency=4
            )
        finally:
            for h in handles:
                h.close()
        assert batch.file_counts.completed == len(paths), batch.file_counts
        yield svc, vs.id
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def ingested(corpus_service: Service) -> dict[str, Any]:
    client = corpus_service.openai()
    vs = client.vector_stores.create(name="dev corpus")
    paths = good_files(archives=True) + bad_files(archives=True)
    handles = [p.open("rb") for p in paths]
    try:
        batch = client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=vs.id, files=handles, max_concurrency=4
        )
    finally:
        for h in handles:
            h.close()
    files = {f.id: f for f in client.vector_stores.files.list(vector_store_id=vs.id, limit=100)}
    names = {f.id: f.filename for f in client.files.list(purpose="assistants", limit=100)}
    return {"store": vs.id, "batch": batch, "files": files, "names": names, "paths": paths}


def _by_name(ingested: dict[str, Any]) -> dict[str, Any]:
    return {ingested["names"][fid]: f for fid, f in ingested["files"].items()}


def test_batch_counts_are_exact(ingested: dict[str, Any]) -> None:
    counts = ingested["batch"].file_counts
    assert counts.in_progress == 0
    assert counts.total == len(ingested["paths"]) + GOOD_MEMBERS + NESTED_MEMBERS
    assert counts.completed == len(good_files(archives=True)) + GOOD_MEMBERS + len(NOW_COMPLETE)
    assert counts.failed == len(bad_files(archives=True)) - len(NOW_COMPLETE) + NESTED_MEMBERS
    assert counts.total == len(ingested["files"])


def test_every_good_file_completes(ingested: dict[str, Any]) -> None:
    by_name = _by_name(ingested)
    not_done = {
        p.name: (by_name[p.name].status, by_name[p.name].last_error)
        for p in good_files(archives=True) + _now_complete()
        if by_name[p.name].status != "completed"
    }
    assert not_done == {}
    assert all(by_name[p.name].usage_bytes > 0 for p in good_files())  # archives hold no chunks
    members = {n: f for n, f in by_name.items() if "/" in n}  # every good member is in a folder
    assert len(members) == GOOD_MEMBERS
    assert all(f.status == "completed" for f in members.values())


def _now_complete() -> list[Path]:
    return [p for p in bad_files(archives=True) if p.name in NOW_COMPLETE]


def test_every_bad_file_fails_precisely(ingested: dict[str, Any]) -> None:
    by_name = _by_name(ingested)
    assert len(_now_complete()) == len(NOW_COMPLETE)
    for path in bad_files(archives=True):
        if path.name in NOW_COMPLETE:
            continue
        vsf = by_name[path.name]
        assert vsf.status == "failed", path.name
        error = vsf.last_error
        assert error is not None and error.message.startswith(path.name), (path.name, error)
        code, words = EXPECTED_FAILURES[path.name]
        assert error.code == code, (path.name, error)
        assert words in error.message.lower(), (path.name, error)


def test_questions_find_their_document_in_top_3(retrieval: tuple[Service, str]) -> None:
    svc, store_id = retrieval
    client = svc.openai()
    misses = {}
    for question, expected in QUESTIONS:
        results = client.vector_stores.search(
            vector_store_id=store_id, query=question, max_num_results=10
        )
        # Top 3 distinct documents, as a reader would see them.
        top: list[str] = []
        for r in results:
            if r.filename not in top:
                top.append(r.filename)
        if expected not in top[:3]:
            misses[question] = top[:3]
    assert misses == {}


def test_no_duplicate_chunks(corpus_service: Service, ingested: dict[str, Any]) -> None:
    with corpus_service.db() as db:
        dupes = db.execute(
            """SELECT file_id, text_sha256, count(*) FROM chunks WHERE vector_store_id = %s
               GROUP BY file_id, chunk_index, text_sha256 HAVING count(*) > 1""",
            [ingested["store"]],
        ).fetchall()
        missing = db.execute(
            "SELECT count(*) AS n FROM chunks WHERE vector_store_id = %s AND embedding IS NULL",
            [ingested["store"]],
        ).fetchone()
    assert dupes == []
    assert missing is not None and missing["n"] == 0


def test_corpus_dir_is_shared_not_copied() -> None:
    assert Path(CORPUS).is_dir()
