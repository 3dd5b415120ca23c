-- Job events: one row per observable change of a job (created, status, stage, progress,
-- cancel request), written by a trigger in the transaction that makes the change, so no
-- code path that updates a job can forget its event. Each row is announced with
-- pg_notify('prepshelf_events', '<id>'), delivered when that transaction commits.
--
-- `txid` orders delivery: ids come from a sequence and can commit out of order, so readers
-- walk (txid, id) and only past the oldest transaction still running (see store/events.py).
CREATE TABLE IF NOT EXISTS job_events (
    id               bigserial PRIMARY KEY,
    txid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    project_id       text NOT NULL,
    job_id           text NOT NULL,
    vector_store_id  text,
    batch_id         text,
    file_id          text,
    type             text NOT NULL,
    data             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, txid, id);
CREATE INDEX IF NOT EXISTS job_events_store ON job_events (vector_store_id, txid, id);
CREATE INDEX IF NOT EXISTS job_events_batch ON job_events (batch_id, txid, id)
    WHERE batch_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS job_events_created ON job_events (created_at);

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
    VALUES (NEW.project_id, NEW.id, NEW.vector_store_id, NEW.batch_id, NEW.file_id, kind,
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
                'batch_id', NEW.batch_id))
    RETURNING id INTO new_id;
    PERFORM pg_notify('prepshelf_events', new_id::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_event_insert ON jobs;
CREATE TRIGGER jobs_event_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION prepshelf_job_event();

DROP TRIGGER IF EXISTS jobs_event_update ON jobs;
CREATE TRIGGER jobs_event_update AFTER UPDATE ON jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.stage IS DISTINCT FROM NEW.stage
          OR OLD.progress_done IS DISTINCT FROM NEW.progress_done
          OR OLD.progress_total IS DISTINCT FROM NEW.progress_total
          OR OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested)
    EXECUTE FUNCTION prepshelf_job_event();
