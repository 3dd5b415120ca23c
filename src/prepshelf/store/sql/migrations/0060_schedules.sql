-- Schedules (cron + time zone) and the runs they start. A run is an ordinary job whose kind
-- names the work (`source_sync`, `eval_run`); it points at its schedule with a typed column.
--
-- Exactly one run per due time: a worker's scanner locks due schedules with
-- FOR UPDATE SKIP LOCKED and, in the same transaction, inserts the run's job row, its queue
-- message and the schedule's next due time. The unique index on (schedule_id, scheduled_for)
-- makes a second run for the same due time impossible even for code that skips the lock.
CREATE TABLE IF NOT EXISTS schedules (
    id           text PRIMARY KEY,
    project_id   text NOT NULL,
    name         text,
    kind         text NOT NULL CHECK (kind IN ('source_sync', 'eval_run')),
    params       jsonb NOT NULL,
    cron         text NOT NULL,
    timezone     text NOT NULL,
    paused_at    timestamptz,          -- paused while set; due times then pass without runs
    next_run_at  timestamptz,          -- NULL while paused
    last_run_at  timestamptz,          -- when the latest run was started (by time or by hand)
    metadata     jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS schedules_project_order ON schedules (project_id, created_at, id);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_run_at) WHERE paused_at IS NULL;

-- `scheduled_for`: the latest due time the run stands for (NULL for "run now"); after
-- downtime one run stands for every missed due time (`params.catch_up` counts them).
-- `params`: what the run was asked to do, a snapshot of its schedule's params.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule_id text
    REFERENCES schedules (id) ON DELETE SET NULL;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS scheduled_for timestamptz;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS params jsonb;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_schedule_due ON jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL AND scheduled_for IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_schedule_order ON jobs (schedule_id, created_at, id)
    WHERE schedule_id IS NOT NULL;

-- New stages: a sync lists its source, copies what changed, then waits while its files are
-- ingested; an evaluation run searches. The allowed list is extended, not restated, so
-- stages that other migrations added before this one stay allowed.
DO $$
DECLARE
    allowed text[];
BEGIN
    SELECT coalesce(array_agg(DISTINCT m[1]), ARRAY[]::text[]) INTO allowed
    FROM pg_constraint c,
         regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS m
    WHERE c.conrelid = 'jobs'::regclass AND c.conname = 'jobs_stage_check';
    ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_stage_check;
    -- Written as IN ('a', 'b', ...), which PostgreSQL keeps as ARRAY['a'::text, ...]: the
    -- same form as before, so a later migration can extend it the same way.
    EXECUTE format(
        'ALTER TABLE jobs ADD CONSTRAINT jobs_stage_check CHECK (stage IN (%s))',
        (SELECT string_agg(DISTINCT quote_literal(s), ', ')
         FROM unnest(allowed || ARRAY['listing', 'copying', 'ingesting', 'searching']) AS s));
END
$$;
