"""Attaching files to a vector store: file rows, job rows and queue messages in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import procrastinate
from psycopg import AsyncConnection

from prepshelf.errors import NotFoundError
from prepshelf.ids import new_job_id
from prepshelf.jobs.queue import defer_ingest_jobs
from prepshelf.store import files as files_db
from prepshelf.store import jobs as jobs_db
from prepshelf.store import queue_turns
from prepshelf.store import vector_stores as vector_stores_db
from prepshelf.store.vector_stores import NewStoreFile

INGEST_KIND = "ingest_file"  # jobs.kind of a store file's ingest job


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
    file_batch_id: str | None,
    small_file_max_bytes: int,
) -> None:
    """Add files to a store and queue one ingest job per file that needs work.

    A file already in the store keeps its state when it is in progress or completed (adding
    it again is idempotent); a failed or cancelled one is run again. Must run inside the
    caller's transaction.
    """
    # Last mention of a file wins, as if the items were applied in order.
    by_id = {item.file_id: item for item in items}
    ids = list(by_id)
    sizes = await files_db.file_sizes(conn, project_id=project_id, file_ids=ids)
    missing = sorted(set(ids) - set(sizes))
    if missing:
        raise NotFoundError(f"No such File object: {', '.join(missing[:5])}", param="file_id")

    existing = await vector_stores_db.lock_store_file_statuses(
        conn, store_id=store_id, file_ids=ids
    )
    keep = [fid for fid in ids if existing.get(fid) in ("in_progress", "completed")]
    run = [fid for fid in ids if fid not in keep]
    if keep and file_batch_id:
        await vector_stores_db.set_store_files_batch(
            conn, store_id=store_id, file_ids=keep, file_batch_id=file_batch_id
        )
    if not run:
        return
    job_ids = {fid: new_job_id() for fid in run}
    # Fair share: the new jobs queue behind this project's own waiting jobs only.
    ahead = await queue_turns.unfinished_jobs(
        conn, project_id=project_id, kind=INGEST_KIND, excluding=[]
    )
    await jobs_db.insert_ingest_jobs(
        conn,
        project_id=project_id,
        store_id=store_id,
        file_batch_id=file_batch_id,
        jobs=[(job_ids[fid], fid) for fid in run],
    )
    await vector_stores_db.start_store_files(
        conn,
        store_id=store_id,
        file_batch_id=file_batch_id,
        files=[
            NewStoreFile(
                file_id=fid,
                job_id=job_ids[fid],
                attributes=by_id[fid].attributes,
                chunking_strategy=by_id[fid].chunking_strategy,
            )
            for fid in run
        ],
    )
    small = {job_ids[fid] for fid in run if sizes[fid] <= small_file_max_bytes}
    queue_ids = await defer_ingest_jobs(app, conn, [job_ids[fid] for fid in run], small)
    await queue_turns.place_in_line(conn, queue_job_ids=queue_ids, ahead=ahead)
    await jobs_db.set_queue_job_ids(
        conn, list(zip([job_ids[f] for f in run], queue_ids, strict=True))
    )
