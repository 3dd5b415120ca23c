-- OpenAI-style batches (/v1/batches) and their checkpointed slices.
CREATE TABLE IF NOT EXISTS batches (
    id                 text PRIMARY KEY,
    project_id         text NOT NULL,
    endpoint           text NOT NULL,
    input_file_id      text NOT NULL,
    completion_window  text NOT NULL,
    status             text NOT NULL CHECK (status IN ('validating', 'failed', 'in_progress',
                           'finalizing', 'completed', 'expired', 'cancelling', 'cancelled')),
    errors             jsonb,
    output_file_id     text,
    error_file_id      text,
    metadata           jsonb,
    job_id             text,
    model              text,
    total              int NOT NULL DEFAULT 0,
    completed          int NOT NULL DEFAULT 0,
    failed             int NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at         timestamptz NOT NULL,
    in_progress_at     timestamptz,
    finalizing_at      timestamptz,
    completed_at       timestamptz,
    failed_at          timestamptz,
    expired_at         timestamptz,
    cancelling_at      timestamptz,
    cancelled_at       timestamptz
);
CREATE INDEX IF NOT EXISTS batches_project_order ON batches (project_id, created_at, id);
CREATE INDEX IF NOT EXISTS batches_job ON batches (job_id);

-- The input cut into slices at validation: where each starts in the file and how many lines it
-- holds. A slice is the unit of work and of checkpointing: its output is one part blob, and
-- `done` flips in the same transaction as the batch's counts and the job's progress.
CREATE TABLE IF NOT EXISTS batch_slices (
    batch_id      text NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    slice_no      int NOT NULL,
    start_line    int NOT NULL,
    start_offset  bigint NOT NULL,
    n_lines       int NOT NULL,
    done          boolean NOT NULL DEFAULT false,
    completed     int NOT NULL DEFAULT 0,
    failed        int NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, slice_no)
);
