"""LlamaIndex: SimpleDirectoryReader (its default readers) → IngestionPipeline
[SentenceSplitter, HuggingFaceEmbedding] with a PostgreSQL docstore and PGVectorStore, so a
re-run de-duplicates by document id and hash (the docstore_strategy the docs describe).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from llama_index.core import SimpleDirectoryReader
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.storage.docstore.postgres import PostgresDocumentStore
from llama_index.storage.kvstore.postgres import PostgresKVStore
from llama_index.vector_stores.postgres import PGVectorStore
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
from pydantic import PrivateAttr

TABLE = "peers"  # PGVectorStore prefixes it: data_peers


class CountingEmbedding(HuggingFaceEmbedding):
    """The stock HuggingFaceEmbedding, counting the texts each batch sends to the model."""

    _meter: EmbedMeter = PrivateAttr(default_factory=EmbedMeter)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        out = super()._get_text_embeddings(texts)
        self._meter.record(len(texts), started)
        return out


def _rows(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM data_{TABLE}").fetchone()
    return int(row[0]) if row else 0


def run(files: list[Path], db_url: str, model_dir: Path, tokenizer: Any) -> PeerResult:
    started = time.perf_counter()
    embed = CountingEmbedding(model_name=str(model_dir), device="cpu", embed_batch_size=EMBED_BATCH)
    embed.get_query_embedding("warm-up")  # first-call costs belong to setup, not to a pass
    setup_seconds = time.perf_counter() - started
    meter = embed._meter
    # Token counts from the model's own tokenizer, without [CLS]/[SEP].
    splitter = SentenceSplitter(
        chunk_size=CHUNK_TOKENS,
        chunk_overlap=CHUNK_OVERLAP,
        tokenizer=partial(tokenizer.encode, add_special_tokens=False),
    )
    sync_url = sqlalchemy_url(db_url, "psycopg2")
    async_url = sqlalchemy_url(db_url, "asyncpg")

    def one_pass() -> tuple[Pass, set[str]]:
        # Fresh reader, stores and pipeline each pass, as a second process would have:
        # the de-duplication state is the docstore table in PostgreSQL.
        vector_store = PGVectorStore.from_params(
            connection_string=sync_url,
            async_connection_string=async_url,
            table_name=TABLE,
            embed_dim=EMBED_DIM,
        )
        # PostgresDocumentStore.from_uri (docstore-postgres 0.6.0) passes an argument its
        # pinned kvstore (0.4.x) does not take, so the kvstore is built directly.
        docstore = PostgresDocumentStore(
            PostgresKVStore(
                table_name="docstore",
                connection_string=sync_url,
                async_connection_string=async_url,
            ),
            namespace=TABLE,
        )
        pipeline = IngestionPipeline(
            transformations=[splitter, embed],
            docstore=docstore,
            vector_store=vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )
        meter.reset()
        started = time.perf_counter()
        documents = SimpleDirectoryReader(
            input_files=[str(p) for p in files], filename_as_id=True
        ).load_data()
        nul_stripped = 0
        for doc in documents:
            text, stripped = strip_nul(doc.text)
            if stripped:
                doc.set_content(text)
                nul_stripped += 1
        load_seconds = time.perf_counter() - started
        nodes = pipeline.run(documents=documents)
        seconds = time.perf_counter() - started
        loaded = {str(d.metadata.get("file_path", "")) for d in documents if d.text.strip()}
        return (
            Pass(
                seconds=seconds,
                embed_seconds=meter.seconds,
                embedded=meter.texts,
                chunks=len(nodes),
                rows=_rows(db_url),
                load_seconds=load_seconds,
                detail={
                    "documents": len(documents),
                    "nodes_returned": len(nodes),
                    "documents_nul_stripped": nul_stripped,
                },
            ),
            loaded,
        )

    first, loaded = one_pass()
    rerun, _ = one_pass()
    return PeerResult(
        peer="llamaindex",
        files=len(files),
        setup_seconds=setup_seconds,
        first=first,
        rerun=rerun,
        files_without_text=sorted(p.name for p in files if str(p) not in loaded),
        config={
            "loaders": "SimpleDirectoryReader defaults (PDFReader/pypdf, DocxReader/docx2txt, "
            "PptxReader, PandasCSVReader; .html/.htm/.md/.txt read as plain text)",
            "splitter": f"SentenceSplitter(chunk_size={CHUNK_TOKENS}, "
            f"chunk_overlap={CHUNK_OVERLAP}, tokenizer=model tokenizer)",
            "embeddings": f"HuggingFaceEmbedding(embed_batch_size={EMBED_BATCH}, normalize)",
            "store": "PGVectorStore + PostgresDocumentStore",
            "dedupe": "IngestionPipeline(docstore_strategy=UPSERTS), filename_as_id=True",
        },
    )
