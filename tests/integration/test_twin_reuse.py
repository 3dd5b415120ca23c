"""The same bytes ingested twice in a project are parsed and embedded once: the second job
copies the first one's chunks and vectors (same chunking and model); anything else differs."""

from __future__ import annotations

from typing import Any

import psycopg
from openai import OpenAI
from psycopg.types.json import Jsonb

from prepshelf.store.chunks import TWIN_LOOKUP_SQL
from support.service import Service

TEXT = "\n\n".join(
    f"Paragraph {i}: the lighthouse keeper logs the tide, the wind and passing ships." * 3
    for i in range(12)
).encode()
SMALL = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 10}}


def _ingest(client: OpenAI, store_id: str, name: str, **kwargs: Any) -> str:
    file = client.files.create(file=(name, TEXT), purpose="assistants")
    vsf = client.vector_stores.files.create_and_poll(
        vector_store_id=store_id, file_id=file.id, poll_interval_ms=200, **kwargs
    )
    assert vsf.status == "completed", vsf.last_error
    return file.id


def _job_and_chunks(svc: Service, store_id: str, file_id: str) -> tuple[dict[str, Any], list[Any]]:
    with svc.db() as db:
        job = db.execute(
            "SELECT * FROM jobs WHERE vector_store_id = %s AND file_id = %s", [store_id, file_id]
        ).fetchone()
        chunks = db.execute(
            """SELECT chunk_index, text, embedding::text AS e FROM chunks
               WHERE vector_store_id = %s AND file_id = %s ORDER BY chunk_index""",
            [store_id, file_id],
        ).fetchall()
    assert job is not None
    return job, [(c["chunk_index"], c["text"], c["e"]) for c in chunks]


def test_same_bytes_again_copy_chunks_instead_of_parsing(service: Service) -> None:
    client = service.openai()
    first_store = client.vector_stores.create(name="twins-a").id
    second_store = client.vector_stores.create(name="twins-b").id
    original = _ingest(client, first_store, "log.txt")
    again_same_store = _ingest(client, first_store, "log-copy.txt")
    other_store = _ingest(client, second_store, "log.txt")

    job0, chunks0 = _job_and_chunks(service, first_store, original)
    assert "parsing" in job0["stage_durations"] and job0["embeddings_computed"] == len(chunks0)
    for store_id, file_id in ((first_store, again_same_store), (second_store, other_store)):
        job, chunks = _job_and_chunks(service, store_id, file_id)
        assert chunks == chunks0  # same texts, same vectors
        assert job["status"] == "succeeded"
        assert "parsing" not in job["stage_durations"]  # never parsed
        assert job["embeddings_computed"] == 0 and job["embeddings_cached"] == len(chunks0)
        assert job["progress_done"] == job["progress_total"] == len(chunks0)

    # Both copies are searchable in the store that holds them twice.
    hits = client.vector_stores.search(
        first_store, query="lighthouse keeper tide", max_num_results=50
    )
    assert {h.file_id for h in hits.data} == {original, again_same_store}


def test_other_chunking_is_parsed_again(service: Service) -> None:
    client = service.openai()
    store = client.vector_stores.create(name="twins-c").id
    _ingest(client, store, "log.txt")
    small = _ingest(client, store, "log-small.txt", chunking_strategy=SMALL)
    job, chunks = _job_and_chunks(service, store, small)
    assert "parsing" in job["stage_durations"]
    assert all(len(text) < 700 for _, text, _ in chunks)


def test_the_twin_lookup_does_not_grow_with_the_store(service: Service) -> None:
    """Every job looks for a twin first; the lookup starts from the file's bytes. It once
    walked every completed file of the store (stale statistics during the burst of uploads
    chose the join order), so a 10,000-file batch paid for it quadratically."""
    client = service.openai()
    store = client.vector_stores.create(name="twins-many").id
    files = [
        (f"note-{i}.txt", f"Note {i}: the tide came in at {i} past.".encode()) for i in range(200)
    ]
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store, files=files, poll_interval_ms=200
    )
    assert batch.file_counts.completed == 200
    with service.db() as db:
        row = db.execute(
            """SELECT f.project_id, f.sha256, f.id, vsf.chunking_strategy, vs.embedding_model
               FROM files f JOIN vector_store_files vsf ON vsf.file_id = f.id
               JOIN vector_stores vs ON vs.id = vsf.vector_store_id
               WHERE vs.id = %s LIMIT 1""",
            [store],
        ).fetchone()
        assert row is not None
        params = [
            row["project_id"],
            row["sha256"],
            Jsonb(row["chunking_strategy"]),
            row["embedding_model"],
            store,
            row["id"],
            None,
        ]
        plan = (
            psycopg.ClientCursor(db)
            .execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + TWIN_LOOKUP_SQL, params)
            .fetchone()
        )
    assert plan is not None
    top = next(iter(plan.values()))[0]["Plan"]
    # A handful of index pages; the walk over the store's files read about 8 per file.
    assert top["Shared Hit Blocks"] + top["Shared Read Blocks"] < 100, top
