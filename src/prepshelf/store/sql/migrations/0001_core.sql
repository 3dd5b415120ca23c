-- Core tables: files, vector stores, their files and batches, jobs, chunks, embedding cache.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE files (
    id          text PRIMARY KEY,
    project_id  text NOT NULL,
    filename    text NOT NULL,
    purpose     text NOT NULL,
    bytes       bigint NOT NULL,
    sha256      text NOT NULL,
    blob_key    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz
);
CREATE INDEX files_project_order ON files (project_id, created_at, id);

CREATE TABLE vector_stores (
    id               text PRIMARY KEY,
    project_id       text NOT NULL,
    name             text,
    description      text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    embedding_model  text NOT NULL,
    dimensions       int NOT NULL,
    expires_after    jsonb,
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_active_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX vector_stores_project_order ON vector_stores (project_id, created_at, id);

CREATE TABLE file_batches (
    id                   text PRIMARY KEY,
    vector_store_id      text NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    created_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    cancel_requested_at  timestamptz
);

CREATE TABLE jobs (
    id                   text PRIMARY KEY,
    project_id           text NOT NULL,
    kind                 text NOT NULL,
    status               text NOT NULL
                         CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stage                text CHECK (stage IN ('parsing', 'chunking', 'embedding', 'indexing')),
    progress_done        int NOT NULL DEFAULT 0,
    progress_total       int,
    progress_unit        text,
    attempts             int NOT NULL DEFAULT 0,
    error                jsonb,
    attempt_log          jsonb NOT NULL DEFAULT '[]',
    worker               text,
    heartbeat_at         timestamptz,
    vector_store_id      text,
    file_id              text,
    batch_id             text,
    queue_job_id         bigint,
    cancel_requested     boolean NOT NULL DEFAULT false,
    chunks_stored        boolean NOT NULL DEFAULT false,
    batches_embedded     int NOT NULL DEFAULT 0,
    batches_reused       int NOT NULL DEFAULT 0,
    embeddings_computed  int NOT NULL DEFAULT 0,
    embeddings_cached    int NOT NULL DEFAULT 0,
    stage_durations      jsonb NOT NULL DEFAULT '{}',
    stage_started_at     timestamptz,
    created_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at           timestamptz,
    finished_at          timestamptz
);
CREATE INDEX jobs_project_order ON jobs (project_id, created_at, id);
CREATE INDEX jobs_status ON jobs (status) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_store_file ON jobs (vector_store_id, file_id);

CREATE TABLE vector_store_files (
    vector_store_id    text NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    file_id            text NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    batch_id           text REFERENCES file_batches (id) ON DELETE SET NULL,
    job_id             text REFERENCES jobs (id) ON DELETE SET NULL,
    status             text NOT NULL
                       CHECK (status IN ('in_progress', 'completed', 'failed', 'cancelled')),
    last_error         jsonb,
    attributes         jsonb NOT NULL DEFAULT '{}',
    chunking_strategy  jsonb NOT NULL,
    usage_bytes        bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (vector_store_id, file_id)
);
CREATE INDEX vector_store_files_status ON vector_store_files (vector_store_id, status);
CREATE INDEX vector_store_files_batch ON vector_store_files (batch_id, status);
CREATE INDEX vector_store_files_file ON vector_store_files (file_id);

-- One row per chunk of a file in a store, keyed so a replayed step cannot duplicate it.
-- `embedding` is NULL until its batch is embedded: that is the resume checkpoint.
CREATE TABLE chunks (
    vector_store_id  text NOT NULL,
    file_id          text NOT NULL,
    chunk_index      int NOT NULL,
    text             text NOT NULL,
    text_sha256      bytea NOT NULL,
    token_count      int NOT NULL,
    embedding        vector,
    PRIMARY KEY (vector_store_id, file_id, chunk_index),
    FOREIGN KEY (vector_store_id, file_id)
        REFERENCES vector_store_files (vector_store_id, file_id) ON DELETE CASCADE
);
-- Per-dimension HNSW index over an expression so several models can share the table;
-- searches use the same expression. Other dimensions get theirs on first use.
CREATE INDEX chunks_hnsw_384 ON chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops)
    WHERE vector_dims(embedding) = 384;

CREATE TABLE embedding_cache (
    model        text NOT NULL,
    text_sha256  bytea NOT NULL,
    embedding    vector NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (model, text_sha256)
);
