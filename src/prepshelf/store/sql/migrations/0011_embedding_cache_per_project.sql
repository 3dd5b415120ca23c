-- The embedding cache belongs to a project. Shared, a hit told one project that another had
-- embedded the same text (a job's `embeddings_cached` counter, and its speed, answered "does
-- anyone here hold this sentence?"). Keyed by project, a text is embedded once per project
-- and model: two projects ingesting the same text each compute it once.
--
-- Older entries cannot be attributed to a project and are dropped: they are a cache, the
-- vectors of stored chunks stay where they are, and re-added texts are embedded again once.
TRUNCATE embedding_cache;
ALTER TABLE embedding_cache ADD COLUMN project_id text NOT NULL;
ALTER TABLE embedding_cache DROP CONSTRAINT embedding_cache_pkey;
ALTER TABLE embedding_cache ADD PRIMARY KEY (project_id, model, text_sha256);
