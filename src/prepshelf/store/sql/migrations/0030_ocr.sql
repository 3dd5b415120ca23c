-- OCR (docs/ocr.md): a job reads scanned pages in its own stage ('ocr', progress in pages),
-- and a chunk records where it came from: {"page", "page_end", "ocr", "ocr_confidence"}.
-- NULL for documents without pages. Search results merge these attributes over the file's.
-- NOTE for merges: a later migration that rebuilds jobs_stage_check must keep 'ocr'.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_stage_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_stage_check
    CHECK (stage IN ('parsing', 'ocr', 'chunking', 'embedding', 'indexing', 'expanding',
                     'members'));
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS attributes jsonb;
