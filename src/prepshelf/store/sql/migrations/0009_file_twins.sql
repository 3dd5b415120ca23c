-- An ingest job looks for a completed copy of the same bytes in the same project before it
-- parses (jobs/ingest.py: chunks are copied, nothing is parsed or embedded again).
CREATE INDEX IF NOT EXISTS files_project_sha256 ON files (project_id, sha256);
