-- The 384-d HNSW index rebuilt with m = 24, ef_construction = 128 (0001 took pgvector's
-- defaults, 16 and 64). bench/search_scale.py, 1,000,000 synthetic chunks, one client, two
-- busy shared cores: at ef_search 200 recall@10 went from 0.88 to 0.97, p50 19 -> 28 ms,
-- p99 39 -> 44 ms; the old index reached only 0.94 at ef_search 400 (p99 64 ms). The cost:
-- about 2.6x the build time and about 3x the PostgreSQL CPU per chunk written (0.9 -> 3.0 ms
-- at 100,000 chunks). PREPSHELF_SEARCH_EF_SEARCH (default 200) sets the search side.
--
-- Built under a new name, then swapped: searches keep using the old index while the new one
-- builds (writes to chunks wait); only the drop and rename need the exclusive lock. On a large
-- database this takes minutes per million chunks and twice the index's disk for a while; give
-- the migrating process memory for the graph (docs/deploy.md, Upgrades and migrations).
CREATE INDEX chunks_hnsw_384_next ON chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops)
    WITH (m = 24, ef_construction = 128)
    WHERE vector_dims(embedding) = 384;
DROP INDEX chunks_hnsw_384;
ALTER INDEX chunks_hnsw_384_next RENAME TO chunks_hnsw_384;
