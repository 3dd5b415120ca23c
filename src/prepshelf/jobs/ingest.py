"""The ingest job: parse → chunk → embed → index one file of one vector store.

Checkpoints make every step safe to run twice: chunks are stored (without vectors) in one
transaction before embedding starts, and each embedded checkpoint is written with the job's
progress in one transaction. A job picked up again continues at the first chunk without a
vector; an unchanged text is never embedded twice in a project (cache keyed by project, model
and sha256: another project's texts are never visible, not even as a cache hit), and a file
whose bytes were ingested before in the project (same chunking and model) copies those chunks
and vectors instead of being parsed at all.

A worker runs several of these at once (`ingest_concurrency`): while one file's chunks are in
the model, the next file is parsed and chunked; the model lock keeps model calls one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

import psycopg

from prepshelf import logs, metrics
from prepshelf.domain.job_errors import gave_up, job_error_message
from prepshelf.errors import FileProcessingError, InvalidFileError
from prepshelf.jobs.expand import expand_archive_job
from prepshelf.jobs.failures import is_transient, retry_if_transient
from prepshelf.jobs.ingest_context import IngestContext, load_context
from prepshelf.jobs.ocr import OcrCancelled, OcrProgress, ocr_options
from prepshelf.jobs.resources import WorkerResources
from prepshelf.jobs.retry import RequeueJob
from prepshelf.jobs.transcribe import TranscriptionCancelled, transcribe, transcription_model
from prepshelf.pipeline.chunk import ChunkingStrategy, chunk_text
from prepshelf.pipeline.embed import Embedder, embedding_cache_model
from prepshelf.pipeline.pages import chunk_attributes
from prepshelf.pipeline.parse import ArchiveFileError, MediaFileError, ParsedDocument
from prepshelf.pipeline.sandbox import parse_in_subprocess
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.pipeline.transcript import SegmentTranscript, transcript_chunks
from prepshelf.store import chunks as chunks_db
from prepshelf.store import jobs as jobs_db
from prepshelf.store import transcripts as transcripts_db

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The job was cancelled, or its file left the store, while it ran."""


class _StageError(Exception):
    def __init__(self, stage: str, cause: BaseException, **where: Any) -> None:
        super().__init__(str(cause))
        self.stage, self.cause, self.where = stage, cause, where


async def run_ingest(res: WorkerResources, job_id: str) -> None:
    logs.bind(job_id=job_id)  # each queue job runs in its own asyncio task: no leak
    async with res.pool.connection() as conn:
        job = await jobs_db.claim_job(conn, job_id=job_id, worker=res.worker_name)
        if job is None:
            # Already final, or cancelled before it started: make sure cancel is complete.
            await jobs_db.finish_cancelled(conn, job_id=job_id)
            return
    logs.bind_job(job)
    try:
        await _ingest(res, job)
    except JobCancelled:
        async with res.pool.connection() as conn:
            await jobs_db.finish_cancelled(conn, job_id=job_id)
    except asyncio.CancelledError:
        # Worker shutting down: the checkpoint in flight was finished; hand the job back at once.
        async with res.pool.connection() as conn:
            await jobs_db.release_job(conn, job=job, reason="released: worker shutting down")
        raise RequeueJob("worker shutting down") from None
    except _StageError as err:
        await _handle_failure(res, job, err)
    except Exception as exc:  # bookkeeping between stages (e.g. the database went away)
        await _handle_failure(res, job, _StageError(job.get("stage") or "starting", exc))


async def _handle_failure(res: WorkerResources, job: dict[str, Any], err: _StageError) -> None:
    cause = err.cause
    transient = is_transient(cause)
    error = _error_body(job, err, transient=transient)

    async def release() -> None:
        log.warning("job %s: transient fault, retrying: %s", job["id"], error["message"])
        async with res.pool.connection() as conn:
            await jobs_db.release_job(conn, job=job, reason="retry scheduled", error=error)

    await retry_if_transient(
        res.settings,
        attempts=job["attempts"],
        transient=transient,
        message=error["message"],
        release=release,
        retry_after_s=getattr(cause, "retry_after_s", None),
    )
    if transient:
        error["message"] = gave_up(error["message"], job["attempts"])
    log.error("job %s failed: %s", job["id"], error["message"])
    async with res.pool.connection() as conn:
        await jobs_db.finish_failed(conn, job=job, error=error)
        await metrics.observe_finished_job(conn, job_id=job["id"])


def _error_body(job: dict[str, Any], err: _StageError, *, transient: bool) -> dict[str, Any]:
    cause = err.cause
    if isinstance(cause, FileProcessingError):
        code, reason = cause.code, cause.message
    elif transient:
        code, reason = "server_error", f"database unavailable: {cause}"
    else:
        code, reason = "server_error", f"internal error: {type(cause).__name__}: {cause}"
    filename = job.get("filename") or job.get("file_id")
    return {
        "code": code,
        "message": job_error_message(str(filename), err.stage, reason, **err.where),
        "stage": err.stage,
        "file_id": job.get("file_id"),
        **err.where,
    }


async def _ingest(res: WorkerResources, job: dict[str, Any]) -> None:
    ctx = await load_context(res, job)
    if ctx is None:
        raise JobCancelled("the file left the store")
    job["filename"] = ctx.source.filename
    store_id, file_id = job["vector_store_id"], job["file_id"]
    if job["stage"] == "members":  # an expanded archive, delivered again: its members settle it
        return
    embedded = False  # every chunk stored with its vector already
    if not job["chunks_stored"] and await _copy_twin(res, job, ctx):
        embedded = True  # the same bytes were ingested before: chunks and vectors copied
    elif not job["chunks_stored"]:
        try:
            embedded = await _parse_and_chunk(res, job, ctx)
        except _StageError as err:
            if not isinstance(err.cause, ArchiveFileError):
                raise
            await _expand(res, job, ctx)
            return
    else:
        await _enter_stage(res, job, "embedding")
    if not embedded:
        await _embed_all(res, job, ctx.source.embedding_model)
    await _enter_stage(res, job, "indexing")
    async with res.pool.connection() as conn:
        size = await chunks_db.usage_bytes(conn, store_id=store_id, file_id=file_id)
        await jobs_db.finish_succeeded(conn, job=job, usage_bytes=size)
        await metrics.observe_finished_job(conn, job_id=job["id"])


async def _enter_stage(res: WorkerResources, job: dict[str, Any], stage: str) -> None:
    """Move the job to `stage`; the in-memory row follows, so a fault between stages is
    reported with the stage it happened in."""
    async with res.pool.connection() as conn:
        await jobs_db.set_stage(conn, job_id=job["id"], stage=stage)
    job["stage"] = stage


async def _expand(res: WorkerResources, job: dict[str, Any], ctx: IngestContext) -> None:
    """Archives become member files with jobs of their own (`jobs/expand.py`)."""
    try:
        expanded = await expand_archive_job(res, job, ctx)
    except Exception as exc:
        raise _StageError("expanding", exc) from exc
    if not expanded:
        raise JobCancelled("cancel requested")


async def _copy_twin(res: WorkerResources, job: dict[str, Any], ctx: IngestContext) -> bool:
    """Copy the chunks of a completed copy of the same file, if there is one; True if done."""
    copied = None
    try:
        async with res.pool.connection() as conn, conn.transaction():
            copied = await chunks_db.copy_from_twin(
                conn,
                store_id=job["vector_store_id"],
                file_id=job["file_id"],
                project_id=job["project_id"],
                sha256=ctx.source.sha256,
                chunking_strategy=ctx.source.chunking_strategy,
                model=ctx.source.embedding_model,
                job_id=job["id"],
                ocr_languages=ctx.ocr_languages,
            )
            if copied is None or copied[1] == 0:
                # A plain return would commit deleting the earlier chunks: roll back instead.
                raise psycopg.Rollback()
            twin, count = copied
            await jobs_db.set_stage(
                conn,
                job_id=job["id"],
                stage="embedding",
                progress_total=count,
                progress_unit="chunks",
                chunks_stored=True,
            )
            await jobs_db.record_checkpoint(
                conn, job_id=job["id"], done=count, computed=0, cached=count
            )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise JobCancelled("the file left the store") from exc
    except psycopg.OperationalError as exc:
        raise _StageError("parsing", exc) from exc
    if copied is None or copied[1] == 0:
        return False
    twin, count = copied
    job["stage"] = "embedding"
    log.info(
        "job %s: %d chunks copied from %s (same bytes, chunking and model)", job["id"], count, twin
    )
    return True


async def _parse_and_chunk(res: WorkerResources, job: dict[str, Any], ctx: IngestContext) -> bool:
    """Parse and chunk the file and store its chunks; a file of one checkpoint is embedded
    on the way (its chunks are stored with their vectors). Returns True in that case."""
    s = res.settings
    await _enter_stage(res, job, "parsing")
    progress = OcrProgress(res.pool, job)  # scanned pages: stage "ocr", progress in pages

    def parse() -> Any:
        # The sandbox reads a real file: the blob itself, or a temporary download from S3.
        with res.blobs.local_copy(ctx.source.blob_key) as path:
            return parse_in_subprocess(
                path,
                ctx.source.filename,
                # OCR has its own time limits inside; this hard stop covers both.
                timeout_s=s.parse_timeout_s + s.ocr_timeout_s,
                memory_limit_bytes=s.parse_memory_limit_mb * 1024 * 1024,
                ocr=ocr_options(s, ctx.ocr_languages),
                on_progress=progress.update,
            )

    doc: ParsedDocument | None = None
    segments: list[SegmentTranscript] = []
    model = None
    try:
        async with res.parse_slots, progress.running():
            doc = await asyncio.to_thread(parse)
    except OcrCancelled as exc:
        raise JobCancelled("cancel requested") from exc
    except MediaFileError as exc:
        model = transcription_model(s, res.upstreams)
        if model is None:  # the message says what to configure
            raise _StageError(job["stage"], exc) from exc
        segments = await _transcribe(res, job, ctx, model)
    except Exception as exc:
        raise _StageError(job["stage"], exc) from exc  # "parsing", or "ocr" once pages were read

    await _enter_stage(res, job, "chunking")
    static = ctx.source.chunking_strategy["static"]
    strategy = ChunkingStrategy(
        max_tokens=static["max_chunk_size_tokens"], overlap_tokens=static["chunk_overlap_tokens"]
    )
    try:
        tokenizer = load_tokenizer(res.model_dir)
        if doc is not None:
            pieces = await asyncio.to_thread(chunk_text, doc.text, tokenizer, strategy)
            spans = doc.page_spans
            attributes = [chunk_attributes(spans, p.char_start, p.char_end) for p in pieces]
        else:
            timed = await asyncio.to_thread(transcript_chunks, segments, tokenizer, strategy)
            pieces = [t.chunk for t in timed]
            attributes = [t.attributes or None for t in timed]
        if not pieces:
            raise InvalidFileError("no speech found" if doc is None else "no extractable text")
    except Exception as exc:
        raise _StageError("chunking", exc) from exc

    rows = [
        (p.index, p.text, hashlib.sha256(p.text.encode()).digest(), p.token_count, attrs)
        for p, attrs in zip(pieces, attributes, strict=True)
    ]
    result: dict[str, Any] | None = None  # what the job found beyond its chunks
    if doc is not None and doc.ocr is not None:
        result = {"ocr": {**doc.ocr.as_result(), "requested_languages": ctx.ocr_languages}}
    if doc is None:
        duration_s = round(segments[-1].end_s, 2) if segments else 0.0
        result = {
            "transcript": {"model": model, "segments": len(segments), "duration_s": duration_s}
        }
    if len(rows) <= max(1, s.embed_checkpoint_rows):
        await _embed_whole_file(res, job, ctx, rows, result)
        return True
    try:
        async with res.pool.connection() as conn, conn.transaction():
            if await jobs_db.is_cancel_requested(conn, job_id=job["id"]):
                raise JobCancelled("cancel requested")
            await chunks_db.replace_chunks(
                conn, store_id=job["vector_store_id"], file_id=job["file_id"], chunks=rows
            )
            await _write_result(conn, job, result)
            await jobs_db.set_stage(
                conn,
                job_id=job["id"],
                stage="embedding",
                progress_done=0,
                progress_total=len(rows),
                progress_unit="chunks",
                chunks_stored=True,
            )
        job["stage"] = "embedding"
    except psycopg.errors.ForeignKeyViolation as exc:
        raise JobCancelled("the file left the store") from exc
    except psycopg.OperationalError as exc:
        raise _StageError("chunking", exc) from exc
    return False


async def _write_result(
    conn: psycopg.AsyncConnection[Any], job: dict[str, Any], result: dict[str, Any] | None
) -> None:
    if result is None:
        return
    await jobs_db.set_result(conn, job_id=job["id"], result=result)
    if "transcript" in result:  # the transcript is in the chunks now
        await transcripts_db.forget_segments(conn, job_id=job["id"])


async def _embed_whole_file(
    res: WorkerResources,
    job: dict[str, Any],
    ctx: IngestContext,
    rows: list[tuple[int, str, bytes, int, dict[str, Any] | None]],
    result: dict[str, Any] | None,
) -> None:
    """A file of one checkpoint: its vectors are computed before anything is stored, then
    chunks, vectors, the job's result and its progress commit together. Each row and its
    indexes are written once instead of twice (stored, then given a vector), and the reads
    between are gone. A kill before the commit re-parses the file on the next attempt:
    nothing a client saw is lost, only one checkpoint's work, as on the long path."""
    model = ctx.source.embedding_model
    try:
        async with res.pool.connection() as conn:
            await jobs_db.set_stage(
                conn,
                job_id=job["id"],
                stage="embedding",
                progress_done=0,
                progress_total=len(rows),
                progress_unit="chunks",
            )
    except psycopg.OperationalError as exc:
        raise _StageError("chunking", exc) from exc
    job["stage"] = "embedding"
    cache_key = embedding_cache_model(model, res.embedder)
    try:
        vectors, fresh, timings = await _vectors(res, job, cache_key, [(r[1], r[2]) for r in rows])
        async with res.pool.connection() as conn, conn.transaction():
            await chunks_db.replace_embedded_chunks(
                conn,
                store_id=job["vector_store_id"],
                file_id=job["file_id"],
                project_id=job["project_id"],
                model=cache_key,
                chunks=[(*row, vec) for row, vec in zip(rows, vectors, strict=True)],
                new_digests=fresh,
            )
            await _write_result(conn, job, result)
            cancelled = await jobs_db.record_checkpoint(
                conn,
                job_id=job["id"],
                done=len(rows),
                computed=len(fresh),
                cached=len(rows) - len(fresh),
                timings=timings,
                chunks_stored=True,
            )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise JobCancelled("the file left the store") from exc
    except (JobCancelled, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise _StageError("embedding", exc, batch=0, chunk_index=rows[0][0]) from exc
    metrics.chunks_embedded(res.embedder, len(rows))
    if cancelled:
        raise JobCancelled("cancel requested")


async def _transcribe(
    res: WorkerResources, job: dict[str, Any], ctx: IngestContext, model: str
) -> list[SegmentTranscript]:
    """A recording's text, segment by segment through the upstream (jobs/transcribe.py)."""
    job["stage"] = "transcribing"
    stack = contextlib.ExitStack()
    try:
        # The blob itself, or a temporary download from object storage (a blocking copy).
        path = await asyncio.to_thread(
            stack.enter_context, res.blobs.local_copy(ctx.source.blob_key)
        )
        return await transcribe(res, job["id"], path, model)
    except TranscriptionCancelled as exc:
        raise JobCancelled("cancel requested") from exc
    except Exception as exc:
        raise _StageError("transcribing", exc) from exc
    finally:
        await asyncio.to_thread(stack.close)


async def _embed_all(res: WorkerResources, job: dict[str, Any], model: str) -> None:
    store_id, file_id = job["vector_store_id"], job["file_id"]
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
    job: dict[str, Any],
    model: str,
    rows: list[dict[str, Any]],
    done: int,
    checkpoint_no: int,
) -> bool:
    store_id, file_id = job["vector_store_id"], job["file_id"]
    first = rows[0]["chunk_index"]
    cache_key = embedding_cache_model(model, res.embedder)  # int8 vectors kept apart
    try:
        digests = [bytes(r["text_sha256"]) for r in rows]
        vectors, fresh, timings = await _vectors(
            res,
            job,
            cache_key,
            [(r["text"], d) for r, d in zip(rows, digests, strict=True)],
            checkpoint_no=checkpoint_no,
        )
        vectors_by_row = [
            (r["chunk_index"], d, v) for r, d, v in zip(rows, digests, vectors, strict=True)
        ]
        async with res.pool.connection() as conn, conn.transaction():
            await chunks_db.write_embeddings(
                conn,
                store_id=store_id,
                file_id=file_id,
                project_id=job["project_id"],
                model=cache_key,
                rows=vectors_by_row,
                new_digests=fresh,
            )
            return await jobs_db.record_checkpoint(
                conn,
                job_id=job["id"],
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
        raise _StageError("embedding", exc, batch=checkpoint_no, chunk_index=first) from exc


async def _vectors(
    res: WorkerResources,
    job: dict[str, Any],
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
            conn, project_id=job["project_id"], model=cache_key, digests=digests
        )
    missing = [(t, d) for t, d in texts if d not in cached]
    computed: dict[bytes, Any] = {}
    timings: dict[str, float] = {}
    if missing:
        asked = [t for t, _ in missing]
        if res.model_queue is not None:  # local model: calls shared with other jobs
            report = None
            vectors, timings = await res.model_queue.embed(asked)
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


def _embed_with_report(res: WorkerResources, texts: list[str]) -> tuple[Any, Any, dict[str, float]]:
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
    return vectors, getattr(embedder, "last_report", None), timings
