"""Typed rows → OpenAI-shaped response objects."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from prepshelf.domain.batches import Batch
from prepshelf.domain.files import File
from prepshelf.domain.jobs import Job
from prepshelf.domain.vector_stores import FileBatch, FileCounts, VectorStore, VectorStoreFile


def ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def file_object(file: File) -> dict[str, Any]:
    return {
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": ts(file.created_at),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": ts(file.expires_at),
    }


def _counts(counts: FileCounts) -> dict[str, int]:
    return asdict(counts)


def vector_store_object(store: VectorStore, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": store.id,
        "object": "vector_store",
        "created_at": ts(store.created_at),
        "name": store.name,
        "description": store.description,
        "usage_bytes": store.usage_bytes,
        "file_counts": _counts(store.file_counts),
        "status": store.status(now),
        "expires_after": store.expires_after,
        "expires_at": ts(store.expires_at),
        "last_active_at": ts(store.last_active_at),
        "metadata": store.metadata,
        "embedding_model": store.embedding_model,
    }


def vector_store_file_object(store_file: VectorStoreFile) -> dict[str, Any]:
    return {
        "id": store_file.file_id,
        "object": "vector_store.file",
        "usage_bytes": store_file.usage_bytes,
        "created_at": ts(store_file.created_at),
        "vector_store_id": store_file.vector_store_id,
        "status": store_file.status,
        "last_error": store_file.last_error,
        "attributes": store_file.attributes,
        "chunking_strategy": store_file.chunking_strategy,
        # Beyond OpenAI: where to watch the work. `batch_id` is the file batch (its public
        # name from before `file_batch_id` existed).
        "job_id": store_file.job_id,
        "batch_id": store_file.file_batch_id,
        "filename": store_file.filename,
    }


def file_batch_object(file_batch: FileBatch) -> dict[str, Any]:
    return {
        "id": file_batch.id,
        "object": "vector_store.files_batch",
        "created_at": ts(file_batch.created_at),
        "vector_store_id": file_batch.vector_store_id,
        "status": file_batch.status(),
        "file_counts": _counts(file_batch.file_counts),
    }


def batch_object(batch: Batch) -> dict[str, Any]:
    """A /v1/batches batch, as OpenAI's Batch object."""
    tokens, output = batch.input_tokens, batch.output_tokens
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": batch.errors,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": ts(batch.created_at),
        "in_progress_at": ts(batch.in_progress_at),
        "expires_at": ts(batch.expires_at),
        "finalizing_at": ts(batch.finalizing_at),
        "completed_at": ts(batch.completed_at),
        "failed_at": ts(batch.failed_at),
        "expired_at": ts(batch.expired_at),
        "cancelling_at": ts(batch.cancelling_at),
        "cancelled_at": ts(batch.cancelled_at),
        "request_counts": {
            "total": batch.total,
            "completed": batch.completed,
            "failed": batch.failed,
        },
        "usage": {
            "input_tokens": tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens + output,
        },
        "metadata": batch.metadata,
        # Beyond OpenAI: where to watch the work (stage, progress in lines, attempts).
        "job_id": batch.job_id,
    }


def job_object(job: Job) -> dict[str, Any]:
    started, finished = job.started_at, job.finished_at
    return {
        "id": job.id,
        "object": "job",
        "kind": job.kind,
        "status": job.status,
        "stage": job.stage,
        "progress": {
            "done": job.progress_done,
            "total": job.progress_total,
            "unit": job.progress_unit,
        },
        "attempts": job.attempts,
        "attempt_log": job.attempt_log,
        "error": job.error,
        "result": job.result,
        "worker": job.worker,
        "heartbeat_at": ts(job.heartbeat_at),
        "created_at": ts(job.created_at),
        "started_at": ts(started),
        "finished_at": ts(finished),
        "duration_s": (
            round((finished - started).total_seconds(), 3) if started and finished else None
        ),
        "stage_durations": job.stage_durations,
        "counters": {
            "checkpoints_embedded": job.checkpoints_embedded,
            "checkpoints_reused": job.checkpoints_reused,
            "embeddings_computed": job.embeddings_computed,
            "embeddings_cached": job.embeddings_cached,
        },
        "cancel_requested": job.cancel_requested,
        "vector_store_id": job.vector_store_id,
        "file_id": job.file_id,
        "file_batch_id": job.file_batch_id,
        "batch_id": job.batch_id,
        "schedule_id": job.schedule_id,
        "scheduled_for": ts(job.scheduled_for),
        "eval_run_id": job.eval_run_id,
        "params": job.params,
        "links": _job_links(job),
    }


def _job_links(job: Job) -> dict[str, str | None]:
    store, file, file_batch, batch = (
        job.vector_store_id,
        job.file_id,
        job.file_batch_id,
        job.batch_id,
    )
    eval_id = (job.params or {}).get("eval_id")
    return {
        "self": f"/v1/jobs/{job.id}",
        "events": f"/v1/jobs/{job.id}/events",
        "file": f"/v1/files/{file}" if file else None,
        "vector_store": f"/v1/vector_stores/{store}" if store else None,
        "vector_store_file": f"/v1/vector_stores/{store}/files/{file}" if store and file else None,
        "file_batch": (
            f"/v1/vector_stores/{store}/file_batches/{file_batch}" if store and file_batch else None
        ),
        "batch": f"/v1/batches/{batch}" if batch else None,
        "schedule": f"/v1/schedules/{job.schedule_id}" if job.schedule_id else None,
        "eval_run": (
            f"/v1/evals/{eval_id}/runs/{job.eval_run_id}" if job.eval_run_id and eval_id else None
        ),
    }


def list_object(data: list[dict[str, Any]], has_more: bool, id_key: str = "id") -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0][id_key] if data else None,
        "last_id": data[-1][id_key] if data else None,
        "has_more": has_more,
    }
