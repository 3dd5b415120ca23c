-- Transcription of audio and video (docs/upstreams.md): a job transcribes a recording segment
-- by segment in its own stage ('transcribing', progress in segments); each segment's answer
-- is kept here the moment it arrives, so a job resumed after a kill starts at its first
-- segment without one and never pays the upstream twice for the others.
CREATE TABLE IF NOT EXISTS transcript_segments (
    job_id      text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    segment     int NOT NULL,             -- 0-based
    start_s     double precision NOT NULL,
    end_s       double precision NOT NULL,
    answer      jsonb NOT NULL,           -- the upstream's json / verbose_json answer
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, segment)
);

-- The allowed stages are extended, not restated (as 0030 does).
DO $$
DECLARE
    allowed text[];
BEGIN
    SELECT coalesce(array_agg(DISTINCT m[1]), ARRAY[]::text[]) INTO allowed
    FROM pg_constraint c,
         regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS m
    WHERE c.conrelid = 'jobs'::regclass AND c.conname = 'jobs_stage_check';
    ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_stage_check;
    EXECUTE format(
        'ALTER TABLE jobs ADD CONSTRAINT jobs_stage_check CHECK (stage IN (%s))',
        (SELECT string_agg(DISTINCT quote_literal(s), ', ')
         FROM unnest(allowed || ARRAY['transcribing']) AS s));
END
$$;
