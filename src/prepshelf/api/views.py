"""Database rows → OpenAI-shaped response objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

Row = dict[str, Any]


def ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def file_object(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": ts(row["created_at"]),
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "status_details": None,
        "expires_at": ts(row.get("expires_at")),
    }


def _counts(row: Row) -> dict[str, int]:
    return {k: int(row[k]) for k in ("in_progress", "completed", "failed", "cancelled", "total")}


def vector_store_object(row: Row, now: datetime | None = None) -> dict[str, Any]:
    counts = _counts(row)
    expired = row.get("expired_at") is not None or (
        row["expires_at"] is not None and now is not None and row["expires_at"] <= now
    )
    status = "expired" if expired else ("in_progress" if counts["in_progress"] else "completed")
    return {
        "id": row["id"],
        "object": "vector_store",
        "created_at": ts(row["created_at"]),
        "name": row["name"],
        "description": row.get("description"),
        "usage_bytes": int(row["usage_bytes"]),
        "file_counts": counts,
        "status": status,
        "expires_after": row["expires_after"],
        "expires_at": ts(row["expires_at"]),
        "last_active_at": ts(row["last_active_at"]),
        "metadata": row["metadata"],
        "embedding_model": row["embedding_model"],
    }


def vector_store_file_object(row: Row) -> dict[str, Any]:
    return {
        "id": row["file_id"],
        "object": "vector_store.file",
        "usage_bytes": int(row["usage_bytes"]),
        "created_at": ts(row["created_at"]),
        "vector_store_id": row["vector_store_id"],
        "status": row["status"],
        "last_error": row["last_error"],
        "attributes": row["attributes"],
        "chunking_strategy": row["chunking_strategy"],
        # Beyond OpenAI: where to watch the work.
        "job_id": row["job_id"],
        "batch_id": row["batch_id"],
        "filename": row.get("filename"),
    }


def batch_object(row: Row) -> dict[str, Any]:
    counts = _counts(row)
    if counts["in_progress"]:
        status = "in_progress"
    elif row["cancel_requested_at"] is not None:
        status = "cancelled"
    elif counts["total"] and counts["failed"] == counts["total"]:
        status = "failed"
    else:
        status = "completed"
    return {
        "id": row["id"],
        "object": "vector_store.files_batch",
        "created_at": ts(row["created_at"]),
        "vector_store_id": row["vector_store_id"],
        "status": status,
        "file_counts": counts,
    }


def job_object(row: Row) -> dict[str, Any]:
    started, finished = row["started_at"], row["finished_at"]
    return {
        "id": row["id"],
        "object": "job",
        "kind": row["kind"],
        "status": row["status"],
        "stage": row["stage"],
        "progress": {
            "done": row["progress_done"],
            "total": row["progress_total"],
            "unit": row["progress_unit"],
        },
        "attempts": row["attempts"],
        "attempt_log": row["attempt_log"],
        "error": row["error"],
        "result": row.get("result"),  # archive: its members; a scan: what OCR did (result.ocr)
        "worker": row["worker"],
        "heartbeat_at": ts(row["heartbeat_at"]),
        "created_at": ts(row["created_at"]),
        "started_at": ts(started),
        "finished_at": ts(finished),
        "duration_s": (
            round((finished - started).total_seconds(), 3) if started and finished else None
        ),
        "stage_durations": row["stage_durations"],
        "counters": {
            "checkpoints_embedded": row["checkpoints_embedded"],
            "checkpoints_reused": row["checkpoints_reused"],
            "embeddings_computed": row["embeddings_computed"],
            "embeddings_cached": row["embeddings_cached"],
        },
        "cancel_requested": row["cancel_requested"],
        "vector_store_id": row["vector_store_id"],
        "file_id": row["file_id"],
        # Its parent, if any: a vector-store file batch (ingest jobs) or a /v1/batches batch.
        "file_batch_id": row["file_batch_id"],
        "batch_id": row["batch_id"],
        # Runs of schedules and evals: what started them, and with which parameters.
        "schedule_id": row.get("schedule_id"),
        "scheduled_for": ts(row.get("scheduled_for")),
        "eval_run_id": row.get("eval_run_id"),
        "params": row.get("params"),
        "links": _job_links(row),
    }


def _job_links(row: Row) -> dict[str, str | None]:
    store, file, file_batch = row["vector_store_id"], row["file_id"], row["file_batch_id"]
    batch = row["batch_id"]
    return {
        "self": f"/v1/jobs/{row['id']}",
        "events": f"/v1/jobs/{row['id']}/events",
        "file": f"/v1/files/{file}" if file else None,
        "vector_store": f"/v1/vector_stores/{store}" if store else None,
        "vector_store_file": f"/v1/vector_stores/{store}/files/{file}" if store and file else None,
        "file_batch": (
            f"/v1/vector_stores/{store}/file_batches/{file_batch}" if store and file_batch else None
        ),
        "batch": f"/v1/batches/{batch}" if batch else None,
        **_run_links(row),
    }


def _run_links(row: Row) -> dict[str, str | None]:
    schedule, run = row.get("schedule_id"), row.get("eval_run_id")
    eval_id = (row.get("params") or {}).get("eval_id")
    return {
        "schedule": f"/v1/schedules/{schedule}" if schedule else None,
        "eval_run": f"/v1/evals/{eval_id}/runs/{run}" if run and eval_id else None,
    }


def list_object(data: list[dict[str, Any]], has_more: bool, id_key: str = "id") -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0][id_key] if data else None,
        "last_id": data[-1][id_key] if data else None,
        "has_more": has_more,
    }
