-- Every finish of an ingest job (succeeded, failed, cancelled) updates its store file by job id.
-- Without an index that was a scan of every store file in the database on every job, a cost
-- that grew with the shelf (bench/small_files.py: 10,000 files in one batch).
CREATE INDEX IF NOT EXISTS vector_store_files_job ON vector_store_files (job_id);
