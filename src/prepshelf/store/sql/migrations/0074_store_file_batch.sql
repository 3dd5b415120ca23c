-- One word per concept (docs/architecture.md, "Words"): the file batch that attached a
-- vector-store file is its `file_batch_id`, as it is a job's (0072). The key to file_batches
-- and the (batch, status) index follow the column. A second run finds nothing to rename.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'vector_store_files'
                 AND column_name = 'batch_id') THEN
        ALTER TABLE vector_store_files RENAME COLUMN batch_id TO file_batch_id;
    END IF;
END
$$;
ALTER INDEX IF EXISTS vector_store_files_batch RENAME TO vector_store_files_file_batch;
