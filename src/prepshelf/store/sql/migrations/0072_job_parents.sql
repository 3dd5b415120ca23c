-- One word per concept (docs/architecture.md, "Words"): a job's parent is typed. An ingest job
-- belongs to a vector-store FILE BATCH (`file_batch_id`, `vsfb_…`); the job behind a /v1/batches
-- BATCH names it in `batch_id` (`batch_…`). Until now both lived in `batch_id`, with no key.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS file_batch_id text
    REFERENCES file_batches (id) ON DELETE SET NULL;

-- Existing file-batch ids move over (a second run finds none left to move). A file batch
-- already gone (its store was deleted) leaves NULL, as the new key's ON DELETE SET NULL would.
UPDATE jobs j SET batch_id = NULL,
       file_batch_id = (SELECT b.id FROM file_batches b WHERE b.id = j.batch_id)
WHERE j.batch_id LIKE 'vsfb\_%';

-- The API writes the job row before its batch row in one transaction, so the key is checked at
-- commit; NOT VALID leaves rows written before it unchecked (new and changed rows are checked).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'jobs'::regclass AND conname = 'jobs_batch_id_fkey') THEN
        ALTER TABLE jobs ADD CONSTRAINT jobs_batch_id_fkey FOREIGN KEY (batch_id)
            REFERENCES batches (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'jobs'::regclass AND conname = 'jobs_one_parent') THEN
        ALTER TABLE jobs ADD CONSTRAINT jobs_one_parent
            CHECK (file_batch_id IS NULL OR batch_id IS NULL);
    END IF;
END
$$;

-- GET /v1/jobs?file_batch_id= / ?batch_id=, and the keys' ON DELETE SET NULL.
CREATE INDEX IF NOT EXISTS jobs_file_batch ON jobs (file_batch_id) WHERE file_batch_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;

-- An embedding job's counters count checkpoints (the unit it writes and resumes from), not
-- batches.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'jobs'
                 AND column_name = 'batches_embedded') THEN
        ALTER TABLE jobs RENAME COLUMN batches_embedded TO checkpoints_embedded;
    END IF;
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'jobs'
                 AND column_name = 'batches_reused') THEN
        ALTER TABLE jobs RENAME COLUMN batches_reused TO checkpoints_reused;
    END IF;
END
$$;

-- Events: `job_events.batch_id` stays the FILE batch, the scope of the public
-- `/v1/events?batch_id=`; the event's data names both parents, each by its own word.
CREATE OR REPLACE FUNCTION prepshelf_job_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    kind text;
    new_id bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'job.created';
    ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
        kind := 'job.' || NEW.status;
    ELSIF OLD.stage IS DISTINCT FROM NEW.stage THEN
        kind := 'job.stage';
    ELSIF OLD.progress_done IS DISTINCT FROM NEW.progress_done
          OR OLD.progress_total IS DISTINCT FROM NEW.progress_total THEN
        kind := 'job.progress';
    ELSIF OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested THEN
        kind := 'job.cancel_requested';
    ELSE
        RETURN NULL;  -- heartbeats and counters alone are not events
    END IF;
    INSERT INTO job_events (project_id, job_id, vector_store_id, batch_id, file_id, type, data)
    VALUES (NEW.project_id, NEW.id, NEW.vector_store_id, NEW.file_batch_id, NEW.file_id, kind,
            jsonb_build_object(
                'job_id', NEW.id,
                'kind', NEW.kind,
                'status', NEW.status,
                'stage', NEW.stage,
                'progress', jsonb_build_object(
                    'done', NEW.progress_done, 'total', NEW.progress_total,
                    'unit', NEW.progress_unit),
                'attempts', NEW.attempts,
                'error', NEW.error,
                'worker', NEW.worker,
                'cancel_requested', NEW.cancel_requested,
                'vector_store_id', NEW.vector_store_id,
                'file_id', NEW.file_id,
                'file_batch_id', NEW.file_batch_id,
                'batch_id', NEW.batch_id))
    RETURNING id INTO new_id;
    PERFORM pg_notify('prepshelf_events', new_id::text);
    RETURN NULL;
END
$$;
