"""The embedding stage of an ingest job: checkpoint by checkpoint, or a small file at once.

Each checkpoint's vectors come from the project's cache or the embedder and are written with
the job's progress in one transaction; a job picked up again continues at the first chunk
without a vector. A file of one checkpoint is embedded before its chunks are stored.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

from prepshelf import metrics
from prepshelf.domain.jobs import IngestJob, WholeFileCheckpoint
from prepshelf.jobs.ingest_attempt import IngestAttempt
from prepshelf.jobs.ingest_context import IngestContext
from prepshelf.jobs.ingest_errors import JobCancelled, StageError
from prepshelf.jobs.resources import WorkerResources
from prepshelf.jobs.whole_file_writes import WholeFileWrite
from prepshelf.pipeline.embed import Embedder, VendorReport, embedding_cache_model
from prepshelf.store import chunks as chunks_db
from prepshelf.store import job_progress
from prepshelf.store import jobs as jobs_db
from prepshelf.store.chunks import FileChunks, NewChunk, UnembeddedChunk
from prepshelf.store.jobs import WholeFileFinish


async def embed_whole_file(
    res: WorkerResources,
    attempt: IngestAttempt,
    ctx: IngestContext,
    rows: list[NewChunk],
    result: dict[str, Any] | None,
) -> None:
    """A file of one checkpoint: its vectors are computed before anything is stored, then
    chunks, vectors, the job's result, its progress and its finish commit together. Each row
    and its indexes are written once instead of twice (stored, then given a vector), and the
    reads and commits between are gone. A kill before the commit re-parses the file on the
    next attempt: nothing a client saw is lost, only one checkpoint's work, as on the long
    path."""
    job, model = attempt.job, ctx.source.embedding_model
    try:
        await attempt.clock.enter(
            "embedding", progress_done=0, progress_total=len(rows), progress_unit="chunks"
        )
    except psycopg.OperationalError as exc:
        raise StageError("chunking", exc) from exc
    cache_key = embedding_cache_model(model, res.embedder)
    try:
        vectors, fresh, timings = await _vectors(res, job, cache_key, [(r[1], r[2]) for r in rows])
        await attempt.clock.enter("indexing")
        async with attempt.clock.finishing() as times:
            write = WholeFileWrite(
                finish=WholeFileFinish(
                    job=job,
                    checkpoint=WholeFileCheckpoint(
                        chunks=len(rows), computed=len(fresh), timings=timings
                    ),
                    usage_bytes=sum(len(r[1].encode()) for r in rows),
                    times=times,
                    archive_member=ctx.source.archive_member,
                ),
                chunks=FileChunks(
                    store_id=job.vector_store_id,
                    file_id=job.file_id,
                    project_id=job.project_id,
                    model=cache_key,
                    chunks=[(*row, vec) for row, vec in zip(rows, vectors, strict=True)],
                    new_digests=fresh,
                ),
                result=result,
            )
            finished = await res.whole_file_writes.write(write)
        if finished is None:
            raise JobCancelled("cancel requested")  # nothing of it was written
    except psycopg.errors.ForeignKeyViolation as exc:
        raise JobCancelled("the file left the store") from exc
    except (JobCancelled, asyncio.CancelledError):
        raise
    except Exception as exc:
        stage = attempt.stage or "embedding"  # the model's call, or the write after it
        raise StageError(stage, exc, batch=0, chunk_index=rows[0][0]) from exc
    metrics.chunks_embedded(res.embedder, len(rows))
    metrics.observe_finished(finished)


async def embed_all(res: WorkerResources, job: IngestJob, model: str) -> None:
    store_id, file_id = job.vector_store_id, job.file_id
    async with res.pool.connection() as conn:
        done = await chunks_db.count_embedded(conn, store_id=store_id, file_id=file_id)
    step_rows = max(1, res.settings.embed_checkpoint_rows)
    checkpoint_no = done // step_rows
    while True:
        # A checkpoint holds several model batches: the model sorts them by length (less
        # padding) and the database sees one write per checkpoint, not per model batch.
        async with res.pool.connection() as conn:
            rows = await chunks_db.next_unembedded(
                conn, store_id=store_id, file_id=file_id, limit=step_rows
            )
        if not rows:
            return
        # Finish the checkpoint in flight even when the worker is told to stop: a shutdown then
        # loses no computed vectors, and the job resumes at the next checkpoint elsewhere.
        step = asyncio.ensure_future(_embed_checkpoint(res, job, model, rows, done, checkpoint_no))
        try:
            cancelled = await asyncio.shield(step)
        except asyncio.CancelledError:
            await step
            raise
        done += len(rows)
        metrics.chunks_embedded(res.embedder, len(rows))
        checkpoint_no += 1
        if cancelled:
            raise JobCancelled("cancel requested")


async def _embed_checkpoint(
    res: WorkerResources,
    job: IngestJob,
    model: str,
    rows: list[UnembeddedChunk],
    done: int,
    checkpoint_no: int,
) -> bool:
    store_id, file_id = job.vector_store_id, job.file_id
    first = rows[0].chunk_index
    cache_key = embedding_cache_model(model, res.embedder)  # int8 vectors kept apart
    try:
        vectors, fresh, timings = await _vectors(
            res,
            job,
            cache_key,
            [(r.text, r.text_sha256) for r in rows],
            checkpoint_no=checkpoint_no,
        )
        vectors_by_row = [
            (r.chunk_index, r.text_sha256, v) for r, v in zip(rows, vectors, strict=True)
        ]
        async with res.pool.connection() as conn, conn.transaction():
            await chunks_db.write_embeddings(
                conn,
                store_id=store_id,
                file_id=file_id,
                project_id=job.project_id,
                model=cache_key,
                rows=vectors_by_row,
                new_digests=fresh,
            )
            return await job_progress.record_checkpoint(
                conn,
                job_id=job.id,
                done=done + len(rows),
                computed=len(fresh),
                cached=len(rows) - len(fresh),
                timings=timings,
            )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise JobCancelled("the file left the store") from exc
    except (JobCancelled, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise StageError("embedding", exc, batch=checkpoint_no, chunk_index=first) from exc


async def _vectors(
    res: WorkerResources,
    job: IngestJob,
    cache_key: str,
    texts: list[tuple[str, bytes]],
    *,
    checkpoint_no: int = 0,
) -> tuple[list[Any], set[bytes], dict[str, float]]:
    """Vectors of (text, sha256) pairs in order: the project's cached ones, the rest from the
    embedder. Returns them, the digests computed now, and the model's timings."""
    digests = [d for _, d in texts]
    async with res.pool.connection() as conn:
        cached = await chunks_db.cached_embeddings(
            conn, project_id=job.project_id, model=cache_key, digests=digests
        )
    missing = [(t, d) for t, d in texts if d not in cached]
    computed: dict[bytes, Any] = {}
    timings: dict[str, float] = {}
    if missing:
        asked = [t for t, _ in missing]
        if res.model_queue is not None:  # local model: calls shared with other jobs
            report = None
            vectors, timings = await res.model_queue.embed(asked, owner=job.project_id)
        else:
            vectors, report, timings = await asyncio.to_thread(_embed_with_report, res, asked)
        computed = {d: v for (_, d), v in zip(missing, vectors, strict=True)}
        if report is not None and report.retries:
            async with res.pool.connection() as conn:
                await jobs_db.note_vendor_retries(
                    conn,
                    job=job,
                    retries=report.retries,
                    last_status=report.last_status,
                    detail=f"checkpoint {checkpoint_no}: {report.last_error}",
                )
    return [cached[d] if d in cached else computed[d] for d in digests], set(computed), timings


def _embed_with_report(
    res: WorkerResources, texts: list[str]
) -> tuple[Any, VendorReport | None, dict[str, float]]:
    """Embed in this thread; return the vectors, what the vendor put us through (remote
    only) and the seconds spent waiting for the model and in the model itself."""
    embedder: Embedder = res.embedder
    asked = time.perf_counter()
    with res.model_lock:
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        timings = {
            "embedding.model": time.perf_counter() - started,
            "embedding.wait": started - asked,
        }
    return vectors, embedder.last_report, timings
