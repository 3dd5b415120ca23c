"""The ingest job: parse → chunk → embed → index one file of one vector store.

Every step is safe to run twice: a file's chunks are stored before its embedding runs over
several checkpoints (`jobs/ingest_embed.py`), or, for a file of one checkpoint, with their
vectors in the same transaction as its progress. A job picked up again continues at the first
chunk without a vector; an unchanged text is never embedded twice in a project (cache keyed by
project, model and sha256: another project's texts are never visible, not even as a cache
hit), and a file whose bytes were ingested before in the project (same chunking and model)
copies those chunks and vectors instead of being parsed at all.

A worker runs several of these at once (`ingest_concurrency`): while one file's chunks are in
the model, the next file is parsed and chunked; their texts share the model's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

import psycopg

from prepshelf import logs, metrics
from prepshelf.domain.job_errors import gave_up, job_error_message
from prepshelf.domain.jobs import IngestJob
from prepshelf.errors import FileProcessingError, InvalidFileError
from prepshelf.jobs.expand import expand_archive_job
from prepshelf.jobs.failures import is_transient, retry_if_transient
from prepshelf.jobs.ingest_attempt import IngestAttempt
from prepshelf.jobs.ingest_context import IngestContext, ingest_context
from prepshelf.jobs.ingest_embed import embed_all, embed_whole_file
from prepshelf.jobs.ingest_errors import JobCancelled, StageError
from prepshelf.jobs.ocr import OcrCancelled, OcrProgress, ocr_options
from prepshelf.jobs.resources import WorkerResources
from prepshelf.jobs.retry import RequeueJob
from prepshelf.jobs.stage_clock import StageClock
from prepshelf.jobs.transcribe import TranscriptionCancelled, transcribe, transcription_model
from prepshelf.jobs.whole_file_writes import write_result
from prepshelf.pipeline.chunk import ChunkingStrategy, chunk_text
from prepshelf.pipeline.pages import chunk_attributes
from prepshelf.pipeline.parse import ArchiveFileError, MediaFileError, ParsedDocument
from prepshelf.pipeline.sandbox import parse_contained
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.pipeline.transcript import SegmentTranscript, transcript_chunks
from prepshelf.store import chunks as chunks_db
from prepshelf.store import job_progress
from prepshelf.store import jobs as jobs_db
from prepshelf.store.chunks import NewChunk

log = logging.getLogger(__name__)


async def run_ingest(res: WorkerResources, job_id: str) -> None:
    logs.bind(job_id=job_id)  # each queue job runs in its own asyncio task: no leak
    async with res.pool.connection() as conn:
        claimed = await jobs_db.claim_ingest_job(conn, job_id=job_id, worker=res.worker_name)
        if claimed is None:
            # Already final, or cancelled before it started: make sure cancel is complete.
            await jobs_db.finish_cancelled(conn, job_id=job_id)
            return
    job, source = claimed
    logs.bind(
        file_id=job.file_id, vector_store_id=job.vector_store_id, file_batch_id=job.file_batch_id
    )
    delay_s = res.settings.stage_write_delay_ms / 1000
    attempt = IngestAttempt(job, StageClock(res.pool, job.id, job.stage, delay_s=delay_s))
    try:
        if source is None:
            raise JobCancelled("the file left the store")
        await _ingest(res, attempt, ingest_context(res, source))
    except JobCancelled:
        await attempt.clock.settle()
        async with res.pool.connection() as conn:
            await jobs_db.finish_cancelled(conn, job_id=job_id)
    except asyncio.CancelledError:
        # Worker shutting down: the checkpoint in flight was finished; hand the job back at once.
        await attempt.clock.settle()
        async with res.pool.connection() as conn:
            await jobs_db.release_job(conn, job=job, reason="released: worker shutting down")
        raise RequeueJob("worker shutting down") from None
    except StageError as err:
        await attempt.clock.settle()
        await _handle_failure(res, attempt, err)
    except Exception as exc:  # bookkeeping between stages (e.g. the database went away)
        await attempt.clock.settle()
        await _handle_failure(res, attempt, StageError(attempt.stage or "starting", exc))
    finally:
        await attempt.clock.settle()  # an archive waiting for its members: nothing more


async def _handle_failure(res: WorkerResources, attempt: IngestAttempt, err: StageError) -> None:
    job, cause = attempt.job, err.cause
    transient = is_transient(cause)
    error = _error_body(attempt, err, transient=transient)

    async def release() -> None:
        log.warning("job %s: transient fault, retrying: %s", job.id, error["message"])
        async with res.pool.connection() as conn:
            await jobs_db.release_job(conn, job=job, reason="retry scheduled", error=error)

    await retry_if_transient(
        res.settings,
        attempts=job.attempts,
        transient=transient,
        message=error["message"],
        release=release,
        retry_after_s=getattr(cause, "retry_after_s", None),
    )
    if transient:
        error["message"] = gave_up(error["message"], job.attempts)
    log.error("job %s failed: %s", job.id, error["message"])
    async with res.pool.connection() as conn:
        await jobs_db.finish_failed(conn, job=job, error=error)
        await metrics.observe_finished_job(conn, job_id=job.id)


def _error_body(attempt: IngestAttempt, err: StageError, *, transient: bool) -> dict[str, Any]:
    cause = err.cause
    if isinstance(cause, FileProcessingError):
        code, reason = cause.code, cause.message
    elif transient:
        code, reason = "server_error", f"database unavailable: {cause}"
    else:
        code, reason = "server_error", f"internal error: {type(cause).__name__}: {cause}"
    filename = attempt.filename or attempt.job.file_id
    return {
        "code": code,
        "message": job_error_message(filename, err.stage, reason, **err.where),
        "stage": err.stage,
        "file_id": attempt.job.file_id,
        **err.where,
    }


async def _ingest(res: WorkerResources, attempt: IngestAttempt, ctx: IngestContext) -> None:
    job = attempt.job
    attempt.filename = ctx.source.filename
    if job.stage == "members":  # an expanded archive, delivered again: its members settle it
        return
    embedded = False  # every chunk stored with its vector already
    if not job.chunks_stored and ctx.source.twin_candidate and await _copy_twin(res, attempt, ctx):
        embedded = True  # the same bytes were ingested before: chunks and vectors copied
    elif not job.chunks_stored:
        try:
            if await _parse_and_chunk(res, attempt, ctx):
                return  # a file of one checkpoint: stored, embedded and finished at once
        except StageError as err:
            if not isinstance(err.cause, ArchiveFileError):
                raise
            await attempt.clock.flush()  # the archive's stages are written from here on
            await _expand(res, job, ctx)
            return
    elif attempt.stage != "embedding":
        await attempt.clock.enter("embedding")
    if not embedded:
        await attempt.clock.flush()  # checkpoints report progress in the embedding stage
        await embed_all(res, job, ctx.source.embedding_model)
    await attempt.clock.enter("indexing")
    async with res.pool.connection() as conn:
        size = await chunks_db.usage_bytes(conn, store_id=job.vector_store_id, file_id=job.file_id)
    async with attempt.clock.finishing() as times, res.pool.connection() as conn:
        finished = await jobs_db.finish_succeeded(
            conn,
            job=job,
            usage_bytes=size,
            times=times,
            archive_member=ctx.source.archive_member,
        )
    if finished is not None:
        metrics.observe_finished(finished)


async def _expand(res: WorkerResources, job: IngestJob, ctx: IngestContext) -> None:
    """Archives become member files with jobs of their own (`jobs/expand.py`)."""
    try:
        expanded = await expand_archive_job(res, job, ctx)
    except Exception as exc:
        raise StageError("expanding", exc) from exc
    if not expanded:
        raise JobCancelled("cancel requested")


async def _copy_twin(res: WorkerResources, attempt: IngestAttempt, ctx: IngestContext) -> bool:
    """Copy the chunks of a completed copy of the same file, if there is one; True if done."""
    job = attempt.job
    copied = None
    try:
        async with (
            attempt.clock.writing() as write,
            res.pool.connection() as conn,
            conn.transaction(),
        ):
            copied = await chunks_db.copy_from_twin(
                conn,
                store_id=job.vector_store_id,
                file_id=job.file_id,
                project_id=job.project_id,
                sha256=ctx.source.sha256,
                chunking_strategy=ctx.source.chunking_strategy,
                model=ctx.source.embedding_model,
                job_id=job.id,
                ocr_languages=ctx.ocr_languages,
            )
            if copied is None or copied[1] == 0:
                # A plain return would commit deleting the earlier chunks: roll back instead.
                raise psycopg.Rollback()
            twin, count = copied
            write.enter("embedding")
            times, _ = write.take()
            await job_progress.set_stage(
                conn,
                job_id=job.id,
                stage="embedding",
                times=times,
                progress_total=count,
                progress_unit="chunks",
                chunks_stored=True,
            )
            await job_progress.record_checkpoint(
                conn, job_id=job.id, done=count, computed=0, cached=count
            )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise JobCancelled("the file left the store") from exc
    except psycopg.OperationalError as exc:
        raise StageError("parsing", exc) from exc
    if copied is None or copied[1] == 0:
        return False
    twin, count = copied
    log.info(
        "job %s: %d chunks copied from %s (same bytes, chunking and model)", job.id, count, twin
    )
    return True


async def _parse_and_chunk(
    res: WorkerResources, attempt: IngestAttempt, ctx: IngestContext
) -> bool:
    """Parse and chunk the file and store its chunks; a file of one checkpoint is embedded
    and finished on the way (its chunks are stored with their vectors). Returns True then."""
    s, job = res.settings, attempt.job
    await attempt.clock.enter("parsing")
    progress = OcrProgress(res.pool, attempt)  # scanned pages: stage "ocr", progress in pages

    def parse() -> Any:
        # The sandbox reads a real file: the blob itself, or a temporary download from S3.
        with res.blobs.local_copy(ctx.source.blob_key) as path:
            return parse_contained(
                path,
                ctx.source.filename,
                inline_max_bytes=s.parse_inline_max_bytes,
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
        async with res.parse_slots.hold(job.project_id), progress.running():
            doc = await asyncio.to_thread(parse)
    except OcrCancelled as exc:
        raise JobCancelled("cancel requested") from exc
    except MediaFileError as exc:
        model = transcription_model(s, res.upstreams)
        if model is None:  # the message says what to configure
            raise StageError(attempt.stage or "parsing", exc) from exc
        segments = await _transcribe(res, attempt, ctx, model)
    except Exception as exc:  # "parsing", or "ocr" once pages were read
        raise StageError(attempt.stage or "parsing", exc) from exc

    await attempt.clock.enter("chunking")
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
        raise StageError("chunking", exc) from exc

    rows: list[NewChunk] = [
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
        await embed_whole_file(res, attempt, ctx, rows, result)
        return True
    try:
        async with (
            attempt.clock.writing() as write,
            res.pool.connection() as conn,
            conn.transaction(),
        ):
            if await job_progress.is_cancel_requested(conn, job_id=job.id):
                raise JobCancelled("cancel requested")
            await chunks_db.replace_chunks(
                conn, store_id=job.vector_store_id, file_id=job.file_id, chunks=rows
            )
            await write_result(conn, job.id, result)
            write.enter("embedding")
            times, _ = write.take()
            await job_progress.set_stage(
                conn,
                job_id=job.id,
                stage="embedding",
                times=times,
                progress_done=0,
                progress_total=len(rows),
                progress_unit="chunks",
                chunks_stored=True,
            )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise JobCancelled("the file left the store") from exc
    except psycopg.OperationalError as exc:
        raise StageError("chunking", exc) from exc
    return False


async def _transcribe(
    res: WorkerResources, attempt: IngestAttempt, ctx: IngestContext, model: str
) -> list[SegmentTranscript]:
    """A recording's text, segment by segment through the upstream (jobs/transcribe.py)."""
    await attempt.clock.enter("transcribing")
    await attempt.clock.flush()  # transcribe() writes the stage's progress from here on
    stack = contextlib.ExitStack()
    try:
        # The blob itself, or a temporary download from object storage (a blocking copy).
        path = await asyncio.to_thread(
            stack.enter_context, res.blobs.local_copy(ctx.source.blob_key)
        )
        return await transcribe(res, attempt.job.id, path, model)
    except TranscriptionCancelled as exc:
        raise JobCancelled("cancel requested") from exc
    except Exception as exc:
        raise StageError("transcribing", exc) from exc
    finally:
        await asyncio.to_thread(stack.close)
