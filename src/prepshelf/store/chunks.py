"""Chunk rows, the embedding cache and vector search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.store.retention import delete_in_chunks

Row = dict[str, Any]

# A chunk as the chunking stage hands it over: index, text, sha256 of the text, tokens, and
# attributes saying where it came from (page, OCR, seconds of a recording); None for none.
NewChunk = tuple[int, str, bytes, int, dict[str, Any] | None]
EmbeddedChunk = tuple[int, str, bytes, int, dict[str, Any] | None, np.ndarray]  # and its vector


@dataclass(frozen=True)
class UnembeddedChunk:
    """A stored chunk still waiting for its vector."""

    chunk_index: int
    text: str
    text_sha256: bytes


@dataclass(frozen=True)
class FileChunks:
    """A file's chunks with their vectors, and the digests of the vectors computed now (the
    ones to cache, under `model` in `project_id`'s cache)."""

    store_id: str
    file_id: str
    project_id: str
    model: str
    chunks: Sequence[EmbeddedChunk]
    new_digests: set[bytes]


async def replace_chunks(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    file_id: str,
    chunks: Sequence[NewChunk],
) -> None:
    """Store a file's chunks without embeddings, replacing any.

    Runs inside the caller's transaction; COPY keeps a 3,000-chunk file to one round trip.
    """
    await _delete_chunks_of(conn, [(store_id, file_id)])
    await _copy_chunks(conn, [(store_id, file_id, chunk) for chunk in chunks], columns="")


async def _delete_chunks_of(conn: AsyncConnection[Any], files: Sequence[tuple[str, str]]) -> None:
    if len(files) == 1:
        await conn.execute(
            "DELETE FROM chunks WHERE vector_store_id = %s AND file_id = %s", list(files[0])
        )
        return
    ordered = sorted(files)
    await conn.execute(
        """DELETE FROM chunks c USING unnest(%s::text[], %s::text[]) AS f(store_id, file_id)
           WHERE c.vector_store_id = f.store_id AND c.file_id = f.file_id""",
        [[s for s, _ in ordered], [f for _, f in ordered]],
    )


async def _copy_chunks(
    conn: AsyncConnection[Any],
    rows: Sequence[tuple[str, str, tuple[Any, ...]]],
    *,
    columns: str,
) -> None:
    """Insert (store, file, chunk) rows, a chunk being index, text, sha256, tokens,
    attributes and the values of `columns` (e.g. ", embedding"), in one COPY."""
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY chunks (vector_store_id, file_id, chunk_index, text, text_sha256, token_count, "
            f"attributes{columns}) FROM STDIN"
        ) as copy,
    ):
        for store_id, file_id, (index, text, digest, tokens, attributes, *more) in rows:
            await copy.write_row(
                (store_id, file_id, index, text, digest, tokens, _jsonb(attributes), *more)
            )


async def replace_embedded_chunks(conn: AsyncConnection[Any], files: Sequence[FileChunks]) -> None:
    """Store files' chunks with their vectors at once, replacing any, and cache the newly
    computed vectors: one write per row and per index, where storing then setting the vector
    writes every row (and its indexes) twice; one DELETE, one COPY and one cache insert for
    all the files. Runs inside the caller's transaction."""
    if not files:
        return
    await _delete_chunks_of(conn, [(f.store_id, f.file_id) for f in files])
    await _copy_chunks(
        conn,
        [(f.store_id, f.file_id, chunk) for f in files for chunk in f.chunks],
        columns=", embedding",
    )
    fresh = {
        (f.project_id, f.model, chunk[2]): chunk[5]
        for f in files
        for chunk in f.chunks
        if chunk[2] in f.new_digests
    }
    await _insert_cache_rows(conn, fresh)


def _jsonb(value: dict[str, Any] | None) -> Jsonb | None:
    return Jsonb(value) if value is not None else None


async def next_unembedded(
    conn: AsyncConnection[Any], *, store_id: str, file_id: str, limit: int
) -> list[UnembeddedChunk]:
    cur = await conn.execute(
        """SELECT chunk_index, text, text_sha256 FROM chunks
           WHERE vector_store_id = %s AND file_id = %s AND embedding IS NULL
           ORDER BY chunk_index LIMIT %s""",
        [store_id, file_id, limit],
    )
    return [
        UnembeddedChunk(r["chunk_index"], r["text"], bytes(r["text_sha256"]))
        for r in await cur.fetchall()
    ]


async def count_embedded(conn: AsyncConnection[Any], *, store_id: str, file_id: str) -> int:
    cur = await conn.execute(
        """SELECT count(*) AS n FROM chunks WHERE vector_store_id = %s AND file_id = %s
           AND embedding IS NOT NULL""",
        [store_id, file_id],
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def usage_bytes(conn: AsyncConnection[Any], *, store_id: str, file_id: str) -> int:
    cur = await conn.execute(
        """SELECT coalesce(sum(octet_length(text)), 0)::bigint AS n FROM chunks
           WHERE vector_store_id = %s AND file_id = %s""",
        [store_id, file_id],
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def cached_embeddings(
    conn: AsyncConnection[Any], *, project_id: str, model: str, digests: Sequence[bytes]
) -> dict[bytes, np.ndarray]:
    """Cached vectors of this project only: a hit never tells one project about another's
    texts (migration 0011)."""
    cur = await conn.execute(
        "SELECT text_sha256, embedding FROM embedding_cache WHERE project_id = %s "
        "AND model = %s AND text_sha256 = ANY(%s)",
        [project_id, model, list(digests)],
    )
    return {bytes(r["text_sha256"]): r["embedding"] for r in await cur.fetchall()}


async def drop_cached_embeddings(conn: AsyncConnection[Any], *, max_age_days: int) -> int:
    """Delete cache entries older than `max_age_days` (by age, not last use)."""
    return await delete_in_chunks(
        conn,
        "embedding_cache",
        "created_at < clock_timestamp() - make_interval(days => %s)",
        [max_age_days],
    )


async def write_embeddings(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    file_id: str,
    project_id: str,
    model: str,
    rows: Sequence[tuple[int, bytes, np.ndarray]],
    new_digests: set[bytes],
) -> None:
    """Set embeddings for (chunk_index, sha256, vector) rows; cache the newly computed ones."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """UPDATE chunks SET embedding = %s
               WHERE vector_store_id = %s AND file_id = %s AND chunk_index = %s""",
            [(vec, store_id, file_id, index) for index, _, vec in rows],
        )
    await _cache_vectors(
        conn,
        project_id=project_id,
        model=model,
        fresh={digest: vec for _, digest, vec in rows if digest in new_digests},
    )


async def _cache_vectors(
    conn: AsyncConnection[Any], *, project_id: str, model: str, fresh: dict[bytes, np.ndarray]
) -> None:
    await _insert_cache_rows(conn, {(project_id, model, d): v for d, v in fresh.items()})


async def _insert_cache_rows(
    conn: AsyncConnection[Any], fresh: dict[tuple[str, str, bytes], np.ndarray]
) -> None:
    """Cache vectors by (project, model, text digest); in key order, so that two writers
    inserting the same keys lock them in the same order."""
    if fresh:
        async with conn.cursor() as cur:
            await cur.executemany(
                """INSERT INTO embedding_cache (project_id, model, text_sha256, embedding)
                   VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                [(*key, fresh[key]) for key in sorted(fresh)],
            )


# A completed copy of the same bytes in the project (same chunking and model), starting from
# the files with these bytes (files_project_sha256): with the join order left to the planner,
# stale statistics during a burst of uploads made it walk every completed file of the store,
# a cost that grew with the store on every job.
TWIN_LOOKUP_SQL = """
    WITH same AS MATERIALIZED (SELECT id FROM files WHERE project_id = %s AND sha256 = %s)
    SELECT vsf.vector_store_id, vsf.file_id, tj.result
    FROM same f
    JOIN vector_store_files vsf ON vsf.file_id = f.id
    JOIN vector_stores vs ON vs.id = vsf.vector_store_id
    LEFT JOIN jobs tj ON tj.id = vsf.job_id
    WHERE vsf.status = 'completed'
      AND vsf.chunking_strategy = %s AND vs.embedding_model = %s
      AND (vsf.vector_store_id, vsf.file_id) <> (%s, %s)
      AND (tj.result -> 'ocr' IS NULL
           OR tj.result -> 'ocr' ->> 'requested_languages' IS NOT DISTINCT FROM %s)
      AND EXISTS (SELECT 1 FROM chunks c WHERE c.vector_store_id = vsf.vector_store_id
                  AND c.file_id = vsf.file_id)
    LIMIT 1"""


async def copy_from_twin(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    file_id: str,
    project_id: str,
    sha256: str,
    chunking_strategy: dict[str, Any],
    model: str,
    job_id: str | None = None,
    ocr_languages: str | None = None,
) -> tuple[str, int] | None:
    """Copy the embedded chunks of a completed copy of the same bytes (same project, chunking
    and model) into this store file; returns (twin file id, chunks copied) or None.

    A twin whose text came partly from OCR counts only when it asked for the same OCR
    languages (`ocr_languages`, the request before defaults); its job's result (pages,
    confidences) is copied to `job_id`'s. Runs inside the caller's transaction. A re-uploaded
    or twice-attached file is then neither parsed nor embedded again."""
    twin = await (
        await conn.execute(
            TWIN_LOOKUP_SQL,
            [
                project_id,
                sha256,
                Jsonb(chunking_strategy),
                model,
                store_id,
                file_id,
                ocr_languages,
            ],
        )
    ).fetchone()
    if twin is None:
        return None
    await conn.execute(
        "DELETE FROM chunks WHERE vector_store_id = %s AND file_id = %s", [store_id, file_id]
    )
    cur = await conn.execute(
        """INSERT INTO chunks (vector_store_id, file_id, chunk_index, text, text_sha256,
                               token_count, embedding, attributes)
           SELECT %s, %s, chunk_index, text, text_sha256, token_count, embedding, attributes
           FROM chunks
           WHERE vector_store_id = %s AND file_id = %s AND embedding IS NOT NULL""",
        [store_id, file_id, twin["vector_store_id"], twin["file_id"]],
    )
    if job_id is not None and twin["result"] is not None and cur.rowcount:
        await conn.execute(
            "UPDATE jobs SET result = %s WHERE id = %s", [Jsonb(twin["result"]), job_id]
        )
    return str(twin["file_id"]), cur.rowcount


async def file_texts(conn: AsyncConnection[Any], *, store_id: str, file_id: str) -> list[str]:
    """The texts of a file's chunks in a store, in chunk order."""
    rows = await (
        await conn.execute(
            "SELECT text FROM chunks WHERE vector_store_id = %s AND file_id = %s "
            "ORDER BY chunk_index",
            [store_id, file_id],
        )
    ).fetchall()
    return [r["text"] for r in rows]
