-- Full-text search next to vector search, and sticky expiry of vector stores.
--
-- 'simple' configuration: lower-cased words, no stemming and no stop words. The corpus mixes
-- languages (English, French, German, Korean, …) and a chunk's language is not known, so a
-- language-specific dictionary would stem the other languages wrongly; 'simple' treats every
-- language the same and keeps exact terms (names, codes, identifiers), which is what the
-- text half of hybrid search adds to the embeddings. The generated column rewrites the table
-- once, at upgrade time (see docs/deploy.md).
ALTER TABLE chunks
    ADD COLUMN IF NOT EXISTS text_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
CREATE INDEX IF NOT EXISTS chunks_text_tsv ON chunks USING gin (text_tsv);

-- Set once by the maintenance task when a store passes expires_at; searches are refused from
-- then on, and later activity does not revive it (as OpenAI's expired stores).
ALTER TABLE vector_stores ADD COLUMN IF NOT EXISTS expired_at timestamptz;
CREATE INDEX IF NOT EXISTS vector_stores_expiring ON vector_stores (expires_at)
    WHERE expires_at IS NOT NULL AND expired_at IS NULL;

-- Age-based vacuum of the embedding cache reads created_at.
CREATE INDEX IF NOT EXISTS embedding_cache_created ON embedding_cache (created_at);
