"""`PREPSHELF_SEARCH_EF_SEARCH`: the HNSW candidate list size a vector search runs with,
and the index options of migration 0010 that it was measured with.

bench/search_scale.py measures what it buys (recall@10) and costs (latency); here only that
the setting is validated and reaches the query.
"""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg
import pytest
from pydantic import ValidationError

from prepshelf.settings import Settings
from prepshelf.store.db import open_pool
from prepshelf.store.search import search_chunks


def test_setting_read_from_environment_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().search_ef_search == 200
    monkeypatch.setenv("PREPSHELF_SEARCH_EF_SEARCH", "250")
    assert Settings().search_ef_search == 250
    for bad in ("0", "1001"):  # pgvector accepts 1..1000
        monkeypatch.setenv("PREPSHELF_SEARCH_EF_SEARCH", bad)
        with pytest.raises(ValidationError):
            Settings()


def test_search_runs_with_the_given_ef_search(database_url: str) -> None:
    async def run() -> str:
        pool = await open_pool(database_url, min_size=1, max_size=1)
        try:
            async with pool.connection() as conn, conn.transaction():
                # search_chunks sets it for its own (here: nested) transaction only.
                hits = await search_chunks(
                    conn,
                    store_id="vs_none",
                    dimensions=384,
                    query_vector=np.ones(384, dtype=np.float32) / np.sqrt(384),
                    limit=10,
                    filters=None,
                    score_threshold=0.0,
                    ef_search=7,
                )
                assert hits == []
                row = await (await conn.execute("SHOW hnsw.ef_search")).fetchone()
                assert row is not None
                return str(row["hnsw.ef_search"])
        finally:
            await pool.close()

    assert asyncio.run(run()) == "7"


def test_migrated_index_has_the_recall_options(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'chunks_hnsw_384'"
        ).fetchone()
    assert row is not None
    assert "m='24'" in row[0] and "ef_construction='128'" in row[0], row[0]
    assert "WHERE (vector_dims(embedding) = 384)" in row[0]
