"""Hybrid search: PostgreSQL full-text search beside vector search, fused by reciprocal rank.

The text half matches any query word (an OR of the words, 'simple' configuration: no stemming,
no stop words, any language) against the chunks' generated `text_tsv` column (GIN index).
PostgreSQL's own ranking has no inverse document frequency, so with no stop-word list a
chunk full of "the" and "of" would win; instead each chunk scores the sum of the BM25 idf of
the query words it contains (document frequencies counted in the store through the GIN
index), and words in more than half of the store's chunks are left out. ts_rank_cd breaks
ties. Each half yields a ranked candidate list; reciprocal rank fusion adds
`weight / (K + rank)` per list, and the sum is divided by its best possible value
(rank 1 in both lists) so scores stay in 0..1, as the API promises.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import AsyncConnection

from prepshelf.store.search import HIT_ATTRIBUTES, filter_sql, search_chunks

Row = dict[str, Any]

RRF_K = 60  # the usual constant: damps the head of each list so neither list dominates
MAX_QUERY_WORDS = 64
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class HybridWeights:
    embedding_weight: float
    text_weight: float


def query_words(query: str) -> list[str]:
    """Distinct words of the query, in order; bounded so a long query stays one cheap scan."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        seen.setdefault(word, None)
    return list(seen)[:MAX_QUERY_WORDS]


async def text_search_chunks(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    query: str,
    limit: int,
    filters: dict[str, Any] | None,
) -> list[Row]:
    """Top `limit` completed chunks matching any word of `query`, best text rank first."""
    weighted = await _word_weights(conn, store_id=store_id, words=query_words(query))
    if not weighted:
        return []
    words, idfs = [w for w, _ in weighted], [i for _, i in weighted]
    # One plainto_tsquery per word, OR-ed: parameters only, so no tsquery syntax to escape.
    tsq = " || ".join(["plainto_tsquery('simple', %s)"] * len(words))
    args: list[Any] = []
    where = filter_sql(filters, args)
    sql = f"""
        WITH q AS (SELECT ({tsq}) AS tsq),
             w AS (SELECT * FROM unnest(%s::text[], %s::float8[]) AS w(word, idf))
        SELECT c.file_id, f.filename, {HIT_ATTRIBUTES} AS attributes, c.text, c.chunk_index,
               (SELECT sum(w.idf) FROM w
                 WHERE c.text_tsv @@ plainto_tsquery('simple', w.word)) AS text_rank
        FROM q, chunks c
        JOIN vector_store_files vsf
          ON vsf.vector_store_id = c.vector_store_id AND vsf.file_id = c.file_id
        JOIN files f ON f.id = c.file_id
        WHERE c.vector_store_id = %s AND c.text_tsv @@ q.tsq AND c.embedding IS NOT NULL
          AND vsf.status = 'completed' AND {where}
        ORDER BY text_rank DESC, ts_rank_cd(c.text_tsv, q.tsq) DESC, c.file_id, c.chunk_index
        LIMIT %s"""
    cur = await conn.execute(sql, [*words, words, idfs, store_id, *args, limit])
    return await cur.fetchall()


async def _word_weights(
    conn: AsyncConnection[Any], *, store_id: str, words: list[str]
) -> list[tuple[str, float]]:
    """(word, BM25 idf) for the query words worth matching in this store."""
    if not words:
        return []
    cur = await conn.execute(
        """SELECT (SELECT count(*) FROM chunks WHERE vector_store_id = %s) AS n,
                  array_agg(df ORDER BY ord) AS dfs
           FROM (SELECT ord, (SELECT count(*) FROM chunks c
                               WHERE c.vector_store_id = %s
                                 AND c.text_tsv @@ plainto_tsquery('simple', t.word)) AS df
                 FROM unnest(%s::text[]) WITH ORDINALITY AS t(word, ord)) s""",
        [store_id, store_id, words],
    )
    row = await cur.fetchone()
    assert row is not None
    n = int(row["n"])
    found = [(w, int(df)) for w, df in zip(words, row["dfs"], strict=True) if df]
    rare = [(w, df) for w, df in found if df <= n / 2] or sorted(found, key=lambda x: x[1])[:1]
    return [(w, math.log(1 + (n - df + 0.5) / (df + 0.5))) for w, df in rare]


def fuse(
    vector_hits: list[Row], text_hits: list[Row], weights: HybridWeights, k: int = RRF_K
) -> list[Row]:
    """Reciprocal rank fusion of two ranked lists; `score` normalised to 0..1, best first."""
    best = (weights.embedding_weight + weights.text_weight) / (k + 1)
    fused: dict[tuple[str, int], Row] = {}
    for hits, weight in ((vector_hits, weights.embedding_weight), (text_hits, weights.text_weight)):
        for rank, hit in enumerate(hits, start=1):
            key = (hit["file_id"], hit["chunk_index"])
            row = fused.setdefault(key, {**hit, "rrf": 0.0})
            row["rrf"] += weight / (k + rank)
    for row in fused.values():
        row["score"] = min(1.0, row.pop("rrf") / best) if best > 0 else 0.0
    return sorted(fused.values(), key=lambda r: (-r["score"], r["file_id"], r["chunk_index"]))


async def hybrid_search(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    dimensions: int,
    query: str,
    query_vector: np.ndarray,
    limit: int,
    filters: dict[str, Any] | None,
    score_threshold: float,
    weights: HybridWeights,
    ef_search: int = 200,
) -> list[Row]:
    """Top `limit` chunks for one query by fused rank; both halves see the same filters."""
    candidates = max(2 * limit, 20)  # deeper lists than asked: fusion reorders the heads
    vector_hits, text_hits = [], []
    if weights.embedding_weight > 0:  # a zero weight means that half is not wanted at all
        vector_hits = await search_chunks(
            conn,
            store_id=store_id,
            dimensions=dimensions,
            query_vector=query_vector,
            limit=candidates,
            filters=filters,
            score_threshold=0.0,
            ef_search=ef_search,
        )
    if weights.text_weight > 0:
        text_hits = await text_search_chunks(
            conn, store_id=store_id, query=query, limit=candidates, filters=filters
        )
    fused = fuse(vector_hits, text_hits, weights)
    return [h for h in fused if h["score"] >= score_threshold][:limit]


async def search(
    conn: AsyncConnection[Any],
    *,
    store_id: str,
    dimensions: int,
    query: str,
    query_vector: np.ndarray,
    limit: int,
    filters: dict[str, Any] | None,
    score_threshold: float,
    weights: HybridWeights | None,
    ef_search: int = 200,
) -> list[Row]:
    """One query against a store: vector search, or hybrid when fusion weights are given.
    The search route and evaluation runs both search through here."""
    if weights is None:
        return await search_chunks(
            conn,
            store_id=store_id,
            dimensions=dimensions,
            query_vector=query_vector,
            limit=limit,
            filters=filters,
            score_threshold=score_threshold,
            ef_search=ef_search,
        )
    return await hybrid_search(
        conn,
        store_id=store_id,
        dimensions=dimensions,
        query=query,
        query_vector=query_vector,
        limit=limit,
        filters=filters,
        score_threshold=score_threshold,
        weights=weights,
        ef_search=ef_search,
    )
