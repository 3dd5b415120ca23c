"""Rows of a running ingest job, written straight into a test database: for tests of the
store's and the worker's writes without a worker."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from support.postgres import sql


def running_ingest_job(database_url: str, name: str, *, store_id: str = "vs_clock") -> str:
    """A claimed ingest job (running, no stage yet) of a file `file-<name>` in store
    `store_id` of project `proj-clock`; returns its id, `job-<name>`."""
    sql(
        database_url,
        """INSERT INTO vector_stores (id, project_id, embedding_model, dimensions)
           VALUES (%s, 'proj-clock', 'm', 384) ON CONFLICT DO NOTHING""",
        [store_id],
    )
    sql(
        database_url,
        """INSERT INTO files (id, project_id, filename, purpose, bytes, sha256, blob_key)
           VALUES (%s, 'proj-clock', %s, 'assistants', 1, %s, %s)""",
        [f"file-{name}", f"{name}.txt", name, f"files/file-{name}"],
    )
    sql(
        database_url,
        """INSERT INTO jobs (id, project_id, kind, status, attempts, worker, started_at,
                             vector_store_id, file_id)
           VALUES (%s, 'proj-clock', 'ingest_file', 'running', 1, 'w', clock_timestamp(),
                   %s, %s)""",
        [f"job-{name}", store_id, f"file-{name}"],
    )
    sql(
        database_url,
        """INSERT INTO vector_store_files (vector_store_id, file_id, job_id, status,
                                           chunking_strategy)
           VALUES (%s, %s, %s, 'in_progress', %s)""",
        [store_id, f"file-{name}", f"job-{name}", Jsonb({"type": "static"})],
    )
    return f"job-{name}"
