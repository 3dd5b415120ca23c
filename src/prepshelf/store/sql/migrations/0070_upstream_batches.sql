-- /v1/batches against upstream models (chat, completions, embeddings on an upstream).
-- An upstream answer costs money and may not be asked twice, so each line's answer is kept
-- the moment it arrives (a slice's lines run concurrently): a worker killed mid-slice loses
-- only the requests still in flight, and the slice's part blobs are written from these rows
-- once every line of it has one. Rows go when the slice is marked done.
CREATE TABLE IF NOT EXISTS batch_answers (
    batch_id       text NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    slice_no       int NOT NULL,
    line_no        int NOT NULL,
    custom_id      text NOT NULL,
    is_error       boolean NOT NULL,        -- the line goes to the error file
    record         jsonb NOT NULL,          -- the output or error line, as written
    input_tokens   bigint NOT NULL DEFAULT 0,
    output_tokens  bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (batch_id, line_no)
);
CREATE INDEX IF NOT EXISTS batch_answers_slice ON batch_answers (batch_id, slice_no);

-- OpenAI's batch `usage` counts output tokens too (chat and completions answers).
ALTER TABLE batches ADD COLUMN IF NOT EXISTS output_tokens bigint NOT NULL DEFAULT 0;

-- Fair share counts a project's unfinished jobs of a kind each time one is queued.
CREATE INDEX IF NOT EXISTS jobs_unfinished_by_project ON jobs (project_id, kind)
    WHERE status IN ('queued', 'running');
