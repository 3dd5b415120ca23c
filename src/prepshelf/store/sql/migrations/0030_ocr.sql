-- OCR (docs/ocr.md): a job reads scanned pages in its own stage ('ocr', progress in pages),
-- and a chunk records where it came from: {"page", "page_end", "ocr", "ocr_confidence"}.
-- NULL for documents without pages. Search results merge these attributes over the file's.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS attributes jsonb;

-- The allowed stages are extended, not restated: stages that other migrations added (before or,
-- on a database upgraded out of order, after this one) stay allowed.
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
         FROM unnest(allowed || ARRAY['ocr']) AS s));
END
$$;
