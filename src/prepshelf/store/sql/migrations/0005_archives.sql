-- Archives: members become files of their own, children of the archive they came from.
-- `archive_root_id` groups a whole tree (nested archives) so its limits are shared;
-- `archive_depth` counts archives above the file (0 = uploaded by a user).
ALTER TABLE files ADD COLUMN IF NOT EXISTS parent_file_id text
    REFERENCES files (id) ON DELETE CASCADE;
ALTER TABLE files ADD COLUMN IF NOT EXISTS archive_root_id text;
ALTER TABLE files ADD COLUMN IF NOT EXISTS archive_depth int NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS files_parent ON files (parent_file_id) WHERE parent_file_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS files_archive_root ON files (archive_root_id)
    WHERE archive_root_id IS NOT NULL;

-- An archive's job unpacks ('expanding'), then waits for its members ('members'); `result`
-- holds the summary of members ingested, refused and failed.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS result jsonb;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_stage_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_stage_check
    CHECK (stage IN ('parsing', 'chunking', 'embedding', 'indexing', 'expanding', 'members'));
