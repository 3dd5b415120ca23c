"""LangChain: per-type loaders → RecursiveCharacterTextSplitter → HuggingFaceEmbeddings →
PGVector, driven by the indexing API's index() with a SQLRecordManager and incremental cleanup.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from langchain_classic.indexes import SQLRecordManager
from langchain_community.document_loaders import (
    BSHTMLLoader,
    CSVLoader,
    Docx2txtLoader,
    PyPDFLoader,
    TextLoader,
)
from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.indexing import index
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_postgres import PGVector
from langchain_text_splitters import RecursiveCharacterTextSplitter
from peer_common import (
    CHUNK_OVERLAP,
    CHUNK_TOKENS,
    EMBED_BATCH,
    EMBED_DIM,
    EmbedMeter,
    Pass,
    PeerResult,
    sqlalchemy_url,
    strip_nul,
)

COLLECTION = "peers"


class PptxLoader(BaseLoader):
    """LangChain's only .pptx loader needs `unstructured`; this is the light equivalent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lazy_load(self) -> Iterator[Document]:
        from pptx import Presentation

        texts = [
            shape.text_frame.text
            for slide in Presentation(str(self.path)).slides
            for shape in slide.shapes
            if shape.has_text_frame and shape.text_frame.text.strip()
        ]
        yield Document(page_content="\n".join(texts), metadata={"source": str(self.path)})


def loader_for(path: Path) -> BaseLoader | None:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return PyPDFLoader(str(path))  # pypdf, one Document per page
    if suffix == ".docx":
        return Docx2txtLoader(str(path))
    if suffix in {".html", ".htm"}:
        return BSHTMLLoader(str(path))  # BeautifulSoup get_text()
    if suffix == ".csv":
        return CSVLoader(str(path), autodetect_encoding=True)  # one Document per row
    if suffix == ".pptx":
        return PptxLoader(path)
    if suffix in {".md", ".txt"}:
        return TextLoader(str(path), autodetect_encoding=True)
    return None


class CountingEmbeddings(Embeddings):
    """Delegates to the real model and counts what it is asked to encode."""

    def __init__(self, inner: Embeddings, meter: EmbedMeter) -> None:
        self.inner = inner
        self.meter = meter

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        out = self.inner.embed_documents(texts)
        self.meter.record(len(texts), started)
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


class _Feed:
    """The Document stream index() consumes: load → split, file by file, with counters."""

    def __init__(self, files: list[Path], splitter: RecursiveCharacterTextSplitter) -> None:
        self.files = files
        self.splitter = splitter
        self.chunks = 0
        self.load_seconds = 0.0
        self.split_seconds = 0.0
        self.failed: dict[str, str] = {}
        self.empty: list[str] = []
        self.nul_stripped = 0

    def __iter__(self) -> Iterator[Document]:
        for path in self.files:
            loader = loader_for(path)
            if loader is None:
                self.failed[path.name] = "no loader for this type"
                continue
            started = time.perf_counter()
            try:
                docs = loader.load()
            except Exception as exc:  # a peer's loader failing on one file is a result
                self.failed[path.name] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            finally:
                self.load_seconds += time.perf_counter() - started
            for doc in docs:
                doc.page_content, stripped = strip_nul(doc.page_content)
                self.nul_stripped += int(stripped)
            started = time.perf_counter()
            chunks = self.splitter.split_documents(docs)
            self.split_seconds += time.perf_counter() - started
            if not chunks:
                self.empty.append(path.name)
            self.chunks += len(chunks)
            yield from chunks


def _rows(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM langchain_pg_embedding").fetchone()
    return int(row[0]) if row else 0


def run(
    files: list[Path], db_url: str, model_dir: Path, tokenizer: Any, index_batch: int
) -> PeerResult:
    started = time.perf_counter()
    model = HuggingFaceEmbeddings(
        model_name=str(model_dir),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"batch_size": EMBED_BATCH, "normalize_embeddings": True},
    )
    model.embed_query("warm-up")  # first-call costs belong to setup, not to the first pass
    setup_seconds = time.perf_counter() - started
    meter = EmbedMeter()
    embeddings = CountingEmbeddings(model, meter)
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=CHUNK_TOKENS, chunk_overlap=CHUNK_OVERLAP
    )
    sa_url = sqlalchemy_url(db_url, "psycopg")

    def one_pass() -> tuple[Pass, _Feed]:
        # Fresh store and record manager objects each pass, as a second process would have:
        # everything the re-run knows lives in PostgreSQL.
        store = PGVector(
            embeddings=embeddings,
            connection=sa_url,
            collection_name=COLLECTION,
            embedding_length=EMBED_DIM,
            use_jsonb=True,
        )
        records = SQLRecordManager(f"pgvector/{COLLECTION}", db_url=sa_url)
        records.create_schema()
        feed = _Feed(files, splitter)
        meter.reset()
        started = time.perf_counter()
        result = index(
            feed,
            records,
            store,
            batch_size=index_batch,
            cleanup="incremental",
            source_id_key="source",
            key_encoder="sha256",
        )
        seconds = time.perf_counter() - started
        records.engine.dispose()
        return (
            Pass(
                seconds=seconds,
                embed_seconds=meter.seconds,
                embedded=meter.texts,
                chunks=feed.chunks,
                rows=_rows(db_url),
                load_seconds=feed.load_seconds,
                detail={
                    **dict(result),
                    "split_seconds": round(feed.split_seconds, 3),
                    "documents_nul_stripped": feed.nul_stripped,
                    "failed": feed.failed,
                },
            ),
            feed,
        )

    first, feed = one_pass()
    rerun, _ = one_pass()
    return PeerResult(
        peer="langchain",
        files=len(files),
        setup_seconds=setup_seconds,
        first=first,
        rerun=rerun,
        files_without_text=sorted([*feed.failed, *feed.empty]),
        config={
            "loaders": "PyPDFLoader, Docx2txtLoader, BSHTMLLoader, TextLoader(autodetect), "
            "CSVLoader(autodetect), python-pptx loader",
            "splitter": f"RecursiveCharacterTextSplitter.from_huggingface_tokenizer("
            f"chunk_size={CHUNK_TOKENS}, chunk_overlap={CHUNK_OVERLAP})",
            "embeddings": f"HuggingFaceEmbeddings(batch_size={EMBED_BATCH}, normalize)",
            "store": "langchain_postgres.PGVector (jsonb)",
            "index": f"index(cleanup='incremental', source_id_key='source', "
            f"batch_size={index_batch}, key_encoder='sha256') + SQLRecordManager",
        },
    )
