"""The archive step of an ingest job: unpack in the sandbox, members become files and jobs.

The sandbox child writes members to a staging folder under the data dir (numbered files, never
member names); this process copies each into blob storage at `files/<child id>`, then one
transaction adds the child file rows, their store files and jobs (same store, batch, chunking
strategy and attributes) and moves the archive's job to stage 'members', where it waits.
The last member to finish finishes the archive in its own transaction (`store/archives.py`
decides how, `store/jobs.py` carries it out).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prepshelf.domain.archives import outcome_message
from prepshelf.errors import InvalidFileError
from prepshelf.ids import new_file_id
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.pipeline.archive import (
    ArchiveLimits,
    Expansion,
    expand_archive,
)
from prepshelf.pipeline.sandbox import run_in_subprocess
from prepshelf.settings import Settings
from prepshelf.store import archives as archives_db
from prepshelf.store import job_progress
from prepshelf.store import jobs as jobs_db
from prepshelf.store import vector_stores as vector_stores_db
from prepshelf.store.archives import ArchiveFile
from prepshelf.store.blobs import BlobStore

if TYPE_CHECKING:
    from prepshelf.domain.jobs import IngestJob
    from prepshelf.jobs.ingest_context import IngestContext
    from prepshelf.jobs.resources import WorkerResources

log = logging.getLogger(__name__)

_COPY_BLOCK = 1024 * 1024


def limits_from(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_total_bytes=settings.archive_max_total_bytes,
        max_members=settings.archive_max_members,
        max_ratio=settings.archive_max_ratio,
        ratio_floor_bytes=settings.archive_ratio_floor_bytes,
        max_depth=settings.archive_max_depth,
        max_name_component=settings.archive_max_name_component,
        max_name_bytes=settings.archive_max_name_bytes,
    )


async def expand_archive_job(res: WorkerResources, job: IngestJob, ctx: IngestContext) -> bool:
    """Expand the job's archive; False when the job was cancelled or its file left the store.

    Raises FileProcessingError when the archive cannot
    be expanded (bomb, limits, corrupt) or holds nothing ingestible.
    """
    s: Settings = res.settings
    async with res.pool.connection() as conn:
        await job_progress.set_stage(conn, job_id=job.id, stage="expanding")
        tree = await archives_db.tree_usage(conn, file_id=job.file_id)
        parent = await archives_db.get_archive_file(conn, file_id=job.file_id)
    if parent is None:
        return False
    staging = s.data_dir / "tmp" / "expand" / job.id
    shutil.rmtree(staging, ignore_errors=True)  # a previous attempt's leftovers
    staging.mkdir(parents=True)
    try:
        target = functools.partial(
            expand_archive,
            dest=staging,
            limits=limits_from(s),
            depth=tree["depth"],
            used_bytes=tree["used_bytes"],
            used_members=tree["used_members"],
        )

        def expand() -> Expansion:
            with res.blobs.local_copy(ctx.source.blob_key) as path:
                result = run_in_subprocess(
                    target,
                    path,
                    ctx.source.filename,
                    timeout_s=s.parse_timeout_s,
                    memory_limit_bytes=s.parse_memory_limit_mb * 1024 * 1024,
                )
            assert isinstance(result, Expansion)
            return result

        expansion = await asyncio.to_thread(expand)
        summary = _summary(expansion)
        if not expansion.members:
            async with res.pool.connection() as conn:
                await archives_db.set_result(conn, job_id=job.id, result=summary)
            refused = [(r.name, r.reason) for r in expansion.refused]
            raise InvalidFileError(
                outcome_message(
                    failed=[],
                    failed_total=0,
                    refused=refused,
                    refused_total=expansion.refused_total,
                )
            )
        children = await asyncio.to_thread(_store_members, res.blobs, staging, expansion)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return await _attach_members(res, job, parent, children, summary)


def _summary(expansion: Expansion) -> dict[str, Any]:
    return {
        "archive": expansion.kind,
        "members": len(expansion.members),
        "bytes": expansion.total_bytes,
        "refused_total": expansion.refused_total,
        "refused": [{"name": r.name, "reason": r.reason} for r in expansion.refused],
    }


def _store_members(
    blobs: BlobStore, staging: Path, expansion: Expansion
) -> list[tuple[str, str, int, str]]:
    """Copy staged members into blob storage; returns (file id, name, bytes, sha256) rows."""
    rows = []
    for member in expansion.members:
        file_id = new_file_id()
        writer = blobs.open_writer(f"files/{file_id}")
        try:
            with (staging / member.staged).open("rb") as fh:
                while block := fh.read(_COPY_BLOCK):
                    writer.write(block)
            sha = writer.commit()
        except BaseException:
            writer.abort()
            raise
        rows.append((file_id, member.name, writer.bytes_written, sha))
    return rows


async def _attach_members(
    res: WorkerResources,
    job: IngestJob,
    parent: ArchiveFile,
    children: list[tuple[str, str, int, str]],
    summary: dict[str, Any],
) -> bool:
    """One transaction: child files, their store files and jobs, the archive starts waiting.

    Blobs written before a rollback are orphans; the maintenance sweep removes them.
    """
    assert res.app is not None, "archives are expanded by a worker, which has a queue"
    app = res.app
    async with res.pool.connection() as conn, conn.transaction():
        cancel_requested = await job_progress.lock_cancel_requested(conn, job_id=job.id)
        vsf = await vector_stores_db.lock_store_file_settings(
            conn, store_id=job.vector_store_id, file_id=job.file_id, job_id=job.id
        )
        if cancel_requested is None or cancel_requested or vsf is None:
            return False
        await archives_db.insert_members(conn, parent=parent, members=children)
        await attach_files(
            app,
            conn,
            project_id=parent.project_id,
            store_id=job.vector_store_id,
            items=[
                AttachItem(
                    file_id=fid,
                    attributes=vsf.attributes,
                    chunking_strategy=vsf.chunking_strategy,
                )
                for fid, *_ in children
            ],
            file_batch_id=vsf.file_batch_id,
            small_file_max_bytes=res.settings.small_file_max_bytes,
        )
        await jobs_db.start_waiting_for_members(
            conn, job_id=job.id, members=len(children), result=summary
        )
    log.info(
        "job %s: archive expanded into %d member(s), %d refused",
        job.id,
        len(children),
        summary["refused_total"],
    )
    return True
