"""Attaching files to a vector store: file rows, job rows and queue messages in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import procrastinate
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.errors import NotFoundError
from prepshelf.ids import new_job_id
from prepshelf.jobs.queue import defer_ingest_jobs
from prepshelf.store import jobs as jobs_db


@dataclass(frozen=True)
class AttachItem:
    file_id: str
    attributes: dict[str, Any]
    chunking_strategy: dict[str, Any]  # resolved, in the response form ({type: static, …})


async def attach_files(
    app: procrastinate.App,
    conn: AsyncConnection[Any],
    *,
    project_id: str,
    store_id: str,
    items: list[AttachItem],
    batch_id: str | None,
) -> None:
    """Add files to a store and queue one ingest job per file that needs work.

    A file already in the store keeps its state when it is in progress or completed (adding
    it again is idempotent); a failed or cancelled one is run again. Must run inside the
    caller's transaction.
    """
    # Last mention of a file wins, as if the items were applied in order.
    by_id = {item.file_id: item for item in items}
    ids = list(by_id)
    known = await (
        await conn.execute(
            "SELECT id FROM files WHERE project_id = %s AND id = ANY(%s)", [project_id, ids]
        )
    ).fetchall()
    missing = sorted(set(ids) - {r["id"] for r in known})
    if missing:
        raise NotFoundError(f"No such File object: {', '.join(missing[:5])}", param="file_id")

    existing = {
        r["file_id"]: r["status"]
        for r in await (
            await conn.execute(
                """SELECT file_id, status FROM vector_store_files
               WHERE vector_store_id = %s AND file_id = ANY(%s) FOR UPDATE""",
                [store_id, ids],
            )
        ).fetchall()
    }
    keep = [fid for fid in ids if existing.get(fid) in ("in_progress", "completed")]
    run = [fid for fid in ids if fid not in keep]
    if keep and batch_id:
        await conn.execute(
            "UPDATE vector_store_files SET batch_id = %s "
            "WHERE vector_store_id = %s AND file_id = ANY(%s)",
            [batch_id, store_id, keep],
        )
    if not run:
        return
    job_ids = {fid: new_job_id() for fid in run}
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO jobs (id, project_id, kind, status, vector_store_id, file_id, batch_id)
               VALUES (%s, %s, 'ingest_file', 'queued', %s, %s, %s)""",
            [(job_ids[fid], project_id, store_id, fid, batch_id) for fid in run],
        )
        await cur.executemany(
            """INSERT INTO vector_store_files (vector_store_id, file_id, batch_id, job_id, status,
                                               attributes, chunking_strategy)
               VALUES (%s, %s, %s, %s, 'in_progress', %s, %s)
               ON CONFLICT (vector_store_id, file_id) DO UPDATE SET
                   batch_id = EXCLUDED.batch_id, job_id = EXCLUDED.job_id,
                   status = 'in_progress', last_error = NULL, usage_bytes = 0,
                   attributes = EXCLUDED.attributes,
                   chunking_strategy = EXCLUDED.chunking_strategy""",
            [
                (
                    store_id,
                    fid,
                    batch_id,
                    job_ids[fid],
                    Jsonb(by_id[fid].attributes),
                    Jsonb(by_id[fid].chunking_strategy),
                )
                for fid in run
            ],
        )
    queue_ids = await defer_ingest_jobs(app, conn, [job_ids[fid] for fid in run])
    await jobs_db.set_queue_job_ids(
        conn, list(zip([job_ids[f] for f in run], queue_ids, strict=True))
    )
