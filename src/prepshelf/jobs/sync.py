"""The source sync: keep a vector store in step with a folder or an S3 prefix.

One run goes through three stages:

- listing: list the source and the store's files of this source; decide per path. A path
  whose stored version has the same change stamp (size + mtime, or ETag) is unchanged and
  not even read; a path whose stamp changed is hashed, and is unchanged when its digest is
  the stored one; anything else is new or changed. A file that failed for good (invalid,
  unsupported) is not run again while its bytes stay the same. A source that lists nothing
  while the store holds files of it fails the run (an unmounted share looks empty).
- copying: copy new and changed files into blob storage (one streamed read each). Then one
  transaction writes the file rows, a file batch with their store files and ingest jobs (the
  attach path of the API), detaches removed paths, and writes the plan into the job's result.
  A run that dies before that commit changed nothing in the store (orphan blobs are swept).
- ingesting: wait, without holding a worker, until the batch's ingest jobs end; each older
  version leaves the store only once its successor has completed (a failed new version
  leaves the old one searchable). The run succeeds with its report, failures listed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from prepshelf.domain.files import safe_filename
from prepshelf.domain.schedules import SyncParams
from prepshelf.domain.syncs import (
    LISTED,
    SHA256,
    SOURCE,
    SOURCE_VERSION,
    SYNC_SOURCE,
    SyncEntry,
    SyncReport,
)
from prepshelf.ids import new_batch_id, new_file_id
from prepshelf.jobs.cancel import cancel_jobs
from prepshelf.jobs.enqueue import AttachItem, attach_files
from prepshelf.jobs.queue import cancel_queued
from prepshelf.jobs.runs import WAITING_STAGE, RunCancelled, RunContext, RunFailed, RunWaits
from prepshelf.pipeline.embedders import embedder_model_info
from prepshelf.store import file_batches as file_batches_db
from prepshelf.store import files as files_db
from prepshelf.store import job_cancels, job_progress
from prepshelf.store import runs as runs_db
from prepshelf.store import syncs as syncs_db
from prepshelf.store import vector_stores as stores_db
from prepshelf.store.blobs import BlobStore
from prepshelf.store.sources import SourceEntry, SourceError, SourceReader, open_source, usable_path
from prepshelf.store.syncs import SyncedVersion

log = logging.getLogger(__name__)

_READ_BYTES = 1024 * 1024
_LIVE = ("completed", "in_progress")  # versions that serve (or soon serve) search
_PERMANENT_CODES = ("invalid_file", "unsupported_file")  # as the ingest job reports them


@dataclass(frozen=True)
class _Copied:
    entry: SourceEntry
    file_id: str
    sha256: str
    size: int
    replaces: bool  # a live older version exists


@dataclass
class _Plan:
    to_copy: list[tuple[SourceEntry, bool]] = field(default_factory=list)  # (entry, replaces)
    retry: list[tuple[SourceEntry, SyncedVersion, bool]] = field(default_factory=list)
    restamp: list[tuple[str, str]] = field(default_factory=list)  # (file_id, new stamp)
    removed: dict[str, list[SyncedVersion]] = field(default_factory=dict)  # path → versions
    stale: list[SyncedVersion] = field(default_factory=list)  # extra versions of kept paths
    unchanged: int = 0
    failed: list[SyncEntry] = field(default_factory=list)
    bytes_read: int = 0


async def run_sync(ctx: RunContext) -> None:
    params = SyncParams.from_json(ctx.job.params)
    if ctx.job.stage == WAITING_STAGE:
        await _settle(ctx, params)
        return
    res, job = ctx.res, ctx.job
    async with res.pool.connection() as conn:
        store = await stores_db.get_store(
            conn, project_id=job.project_id, store_id=params.vector_store_id
        )
    if store is None:
        raise RunFailed(f"vector store {params.vector_store_id} no longer exists")
    model = embedder_model_info(res.settings).model_id
    if store.embedding_model != model:
        raise RunFailed(
            f"vector store {store.id} was built with {store.embedding_model}; "
            f"the workers embed with {model}"
        )
    await ctx.enter("listing")
    reader = await asyncio.to_thread(open_source, params.source, res.settings)
    entries = await asyncio.to_thread(_list, reader, res.settings.sync_max_files)
    async with res.pool.connection() as conn:
        versions = await syncs_db.synced_versions(
            conn, store_id=params.vector_store_id, source_uri=reader.uri
        )
    if not entries and versions:
        # An unmounted share or an emptied bucket looks like an empty folder: never let that
        # wipe the store. Files can be taken out on purpose through the API.
        raise RunFailed(
            f"the source lists no file while the store holds {len(versions)} of it; "
            "refusing to remove them all (is the source mounted?)"
        )
    plan = await _plan(ctx, reader, entries, versions)
    await ctx.enter("copying", total=len(plan.to_copy), unit="files")
    copied: list[_Copied] = []
    bytes_copied = 0
    for done, (entry, replaces) in enumerate(plan.to_copy, start=1):
        try:
            file_id, sha, size = await asyncio.to_thread(_copy, reader, entry, res.blobs)
        except SourceError as exc:
            plan.failed.append(SyncEntry(entry.path, reason=str(exc)))
        else:
            copied.append(_Copied(entry, file_id, sha, size, replaces))
            bytes_copied += size
        await ctx.progress(done)
    report = await _commit(ctx, params, reader.uri, len(entries), plan, copied, bytes_copied)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    log.info("sync %s of %s: %s", job.id, reader.uri, counts)
    ctx.job = replace(ctx.job, result=report.to_json(), stage=WAITING_STAGE)
    await _settle(ctx, params)


def _list(reader: SourceReader, limit: int) -> list[SourceEntry]:
    entries: list[SourceEntry] = []
    for entry in reader.entries():
        if len(entries) == limit:
            raise RunFailed(f"the source holds more than {limit} files (PREPSHELF_SYNC_MAX_FILES)")
        entries.append(entry)
    return entries


def _digest(reader: SourceReader, entry: SourceEntry) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with reader.open(entry.path) as fh:
        while data := fh.read(_READ_BYTES):
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size


def _copy(reader: SourceReader, entry: SourceEntry, blobs: BlobStore) -> tuple[str, str, int]:
    """Stream one source file into a new blob; (file id, sha256, bytes)."""
    file_id = new_file_id()
    writer = blobs.open_writer(f"files/{file_id}")
    try:
        with reader.open(entry.path) as fh:
            while data := fh.read(_READ_BYTES):
                writer.write(data)
        sha = writer.commit()
    except SourceError:
        writer.abort()
        raise
    except Exception as exc:  # a read that broke mid-way (network, I/O): this file only
        writer.abort()
        raise SourceError(f"cannot read {entry.path}: {type(exc).__name__}: {exc}") from exc
    return file_id, sha, writer.bytes_written


async def _plan(
    ctx: RunContext, reader: SourceReader, entries: list[SourceEntry], versions: list[SyncedVersion]
) -> _Plan:
    plan = _Plan()
    by_path: dict[str, list[SyncedVersion]] = {}
    for version in versions:
        by_path.setdefault(version.path, []).append(version)
    listed = {e.path for e in entries}
    plan.removed = {p: v for p, v in by_path.items() if p not in listed}
    limit = ctx.res.settings.max_upload_bytes
    for entry in entries:
        problem = usable_path(entry.path)
        if problem is None and entry.size > limit:
            problem = f"larger than {limit} bytes (PREPSHELF_MAX_UPLOAD_BYTES)"
        if problem is not None:
            plan.failed.append(SyncEntry(_printable(entry.path), reason=problem))
            continue
        have = by_path.get(entry.path, [])
        live = [v for v in have if v.status in _LIVE]
        keep = next((v for v in live if v.stamp == entry.stamp), None)
        dead = next((v for v in have if v not in live and v.stamp == entry.stamp), None)
        sha: str | None = None
        if keep is None and dead is None and have:
            try:  # the stamp moved: the bytes may still be the same (a touched file)
                sha, size = await asyncio.to_thread(_digest, reader, entry)
            except SourceError as exc:
                plan.failed.append(SyncEntry(entry.path, reason=str(exc)))
                continue
            plan.bytes_read += size
            keep = next((v for v in live if v.sha256 == sha), None)
            if keep is not None:
                plan.restamp.append((keep.file_id, entry.stamp))
        if keep is not None:
            plan.unchanged += 1
            if keep.status == "completed":  # an unfinished one waits for the next sync
                plan.stale += [v for v in have if v.file_id != keep.file_id]
            continue
        if dead is None and sha is not None:
            dead = next((v for v in have if v.sha256 == sha), None)
        if dead is not None and _permanent(dead):  # the same bytes would fail the same way
            reason = (dead.last_error or {}).get("message") or dead.status
            plan.failed.append(SyncEntry(entry.path, dead.file_id, f"unchanged since: {reason}"))
        elif dead is not None:  # failed for a passing reason (or cancelled): run it again
            plan.retry.append((entry, dead, bool(live)))
        else:
            plan.to_copy.append((entry, bool(live)))
    return plan


def _permanent(version: SyncedVersion) -> bool:
    code = (version.last_error or {}).get("code")
    return version.status == "failed" and code in _PERMANENT_CODES


def _printable(path: str) -> str:
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _attributes(uri: str, path: str, sha: str, stamp: str) -> dict[str, Any]:
    return {SYNC_SOURCE: uri, SOURCE: path, SHA256: sha, SOURCE_VERSION: stamp}


async def _commit(
    ctx: RunContext,
    params: SyncParams,
    uri: str,
    listed: int,
    plan: _Plan,
    copied: list[_Copied],
    bytes_copied: int,
) -> SyncReport:
    """Apply the plan to the store in one transaction; return the report so far."""
    res, job, store_id = ctx.res, ctx.job, params.vector_store_id
    items = [
        AttachItem(
            c.file_id,
            _attributes(uri, c.entry.path, c.sha256, c.entry.stamp),
            params.chunking_strategy,
        )
        for c in copied
    ] + [
        AttachItem(
            v.file_id, _attributes(uri, e.path, v.sha256 or "", e.stamp), params.chunking_strategy
        )
        for e, v, _ in plan.retry
    ]
    added = [SyncEntry(c.entry.path, c.file_id) for c in copied if not c.replaces]
    added += [SyncEntry(e.path, v.file_id) for e, v, live in plan.retry if not live]
    replaced = [SyncEntry(c.entry.path, c.file_id) for c in copied if c.replaces]
    replaced += [SyncEntry(e.path, v.file_id) for e, v, live in plan.retry if live]
    removed = [SyncEntry(p, vs[0].file_id) for p, vs in sorted(plan.removed.items())]
    detach = [v.file_id for vs in plan.removed.values() for v in vs] + [
        v.file_id for v in plan.stale
    ]
    batch_id = new_batch_id() if items else None
    report = SyncReport(
        source=uri,
        files_listed=listed,
        added=tuple(added[:LISTED]),
        replaced=tuple(replaced[:LISTED]),
        removed=tuple(removed[:LISTED]),
        failed=tuple(plan.failed[:LISTED]),
        counts={
            "added": len(added),
            "replaced": len(replaced),
            "removed": len(removed),
            "unchanged": plan.unchanged,
            "failed": len(plan.failed),
        },
        older_versions_detached=len(plan.stale),
        bytes_read=plan.bytes_read + bytes_copied,
        bytes_copied=bytes_copied,
        file_batch_id=batch_id,
    )
    async with res.pool.connection() as conn:
        async with conn.transaction():
            if await job_progress.is_cancel_requested(conn, job_id=job.id):
                raise RunCancelled()
            for c in copied:
                await files_db.insert_file(
                    conn,
                    file_id=c.file_id,
                    project_id=job.project_id,
                    filename=safe_filename(c.entry.path),
                    purpose="assistants",
                    size=c.size,
                    sha256=c.sha256,
                    blob_key=f"files/{c.file_id}",
                )
            if batch_id is not None:
                await file_batches_db.create_file_batch(
                    conn, file_batch_id=batch_id, store_id=store_id
                )
                await attach_files(
                    ctx.app,
                    conn,
                    project_id=job.project_id,
                    store_id=store_id,
                    items=items,
                    file_batch_id=batch_id,
                    small_file_max_bytes=ctx.res.settings.small_file_max_bytes,
                )
            for file_id, stamp in plan.restamp:
                await syncs_db.set_stamp(conn, store_id=store_id, file_id=file_id, stamp=stamp)
            queue_ids = await _detach(conn, job.project_id, store_id, detach)
            await runs_db.set_result(conn, job_id=job.id, result=report.to_json())
            await job_progress.set_stage(
                conn,
                job_id=job.id,
                stage=WAITING_STAGE,
                progress_total=len(items),
                progress_unit="files",
            )
            await runs_db.set_progress(conn, job_id=job.id, done=0)
        await cancel_queued(ctx.app, queue_ids)
    ctx.stage = WAITING_STAGE
    return report


async def _detach(conn: Any, project_id: str, store_id: str, file_ids: list[str]) -> list[int]:
    """Stop the files' ingest jobs and take them out; return queue ids to drop after commit."""
    if not file_ids:
        return []
    job_ids = await syncs_db.active_jobs_of_files(conn, store_id=store_id, file_ids=file_ids)
    queue_ids = await job_cancels.request_cancel(conn, job_ids=job_ids)
    await syncs_db.detach(conn, project_id=project_id, store_id=store_id, file_ids=file_ids)
    return queue_ids


async def _settle(ctx: RunContext, params: SyncParams) -> None:
    """Look at the batch's files: detach the older versions of those that completed; end
    the run when none is in progress, else look again later."""
    res, job = ctx.res, ctx.job
    assert job.result is not None
    report = SyncReport.from_json(job.result)
    store_id = params.vector_store_id
    if report.file_batch_id is None:
        await _finish(ctx, report)
        return
    async with res.pool.connection() as conn:
        if await job_progress.is_cancel_requested(conn, job_id=job.id):
            await _cancel_batch(ctx, report.file_batch_id)
            raise RunCancelled(report.to_json())
        batch = await syncs_db.batch_versions(
            conn, store_id=store_id, file_batch_id=report.file_batch_id
        )
        mine = await syncs_db.synced_versions(conn, store_id=store_id, source_uri=report.source)
        done = sum(1 for v in batch if v.status != "in_progress")
        await runs_db.set_progress(conn, job_id=job.id, done=done, total=len(batch))
        successors = {v.path: v.file_id for v in batch if v.status == "completed"}
        older = [
            v.file_id for v in mine if v.path in successors and v.file_id != successors[v.path]
        ]
        if older:
            async with conn.transaction():
                queue_ids = await _detach(conn, job.project_id, store_id, older)
                report = replace(
                    report, older_versions_detached=report.older_versions_detached + len(older)
                )
                await runs_db.set_result(conn, job_id=job.id, result=report.to_json())
            await cancel_queued(ctx.app, queue_ids)
    if done < len(batch):
        raise RunWaits(res.settings.run_poll_interval_s)
    failures = [
        SyncEntry(v.path, v.file_id, reason=str((v.last_error or {}).get("message") or v.status))
        for v in batch
        if v.status in ("failed", "cancelled")
    ]
    await _finish(ctx, report.with_failures(failures))


async def _cancel_batch(ctx: RunContext, batch_id: str) -> None:
    async with ctx.res.pool.connection() as conn:
        job_ids = [
            v.job_id
            for v in await syncs_db.batch_versions(
                conn, store_id=str(ctx.job.vector_store_id), file_batch_id=batch_id
            )
            if v.status == "in_progress" and v.job_id
        ]
        await cancel_jobs(ctx.app, conn, job_ids)


async def _finish(ctx: RunContext, report: SyncReport) -> None:
    async with ctx.res.pool.connection() as conn:
        await runs_db.finish_succeeded(conn, job=ctx.job, result=report.to_json())
