"""What a vector store, a file in it and a file batch are, as the store reads them back.

File counts are read live from `vector_store_files`, never kept as counters (store/
vector_stores.py), so a status derived from them is exact at the moment of the read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

StoreFileStatus = Literal["in_progress", "completed", "failed", "cancelled"]


@dataclass(frozen=True)
class FileCounts:
    """A set of vector-store files counted by status, as OpenAI's `file_counts`."""

    in_progress: int
    completed: int
    failed: int
    cancelled: int
    total: int


@dataclass(frozen=True)
class VectorStore:
    id: str
    project_id: str
    name: str | None
    description: str | None
    metadata: dict[str, str]
    embedding_model: str  # the model its vectors came from; another model's queries are refused
    dimensions: int
    expires_after: dict[str, Any] | None  # {"anchor": "last_active_at", "days": N}
    expires_at: datetime | None
    expired_at: datetime | None  # sticky: set once by the sweeper when expires_at passed
    created_at: datetime
    last_active_at: datetime
    usage_bytes: int  # the sum over its files
    file_counts: FileCounts

    def status(self, now: datetime | None = None) -> Literal["expired", "in_progress", "completed"]:
        """Expired once marked so, or (given `now`) once its expiry passed before the sweeper
        got to it; otherwise in progress while any file is."""
        if self.expired_at is not None or (
            self.expires_at is not None and now is not None and self.expires_at <= now
        ):
            return "expired"
        return "in_progress" if self.file_counts.in_progress else "completed"


@dataclass(frozen=True)
class VectorStoreFile:
    """A file attached to a store: its own status, error and usage, and the job serving it."""

    vector_store_id: str
    file_id: str
    file_batch_id: str | None  # the file batch that attached it last, if any
    job_id: str | None  # the file's latest job
    status: StoreFileStatus
    last_error: dict[str, Any] | None  # {"code", "message"} once failed
    attributes: dict[str, Any]
    chunking_strategy: dict[str, Any]
    usage_bytes: int
    created_at: datetime
    filename: str


@dataclass(frozen=True)
class FileBatch:
    """Many files attached to one store at once (`vsfb_…`)."""

    id: str
    vector_store_id: str
    created_at: datetime
    cancel_requested_at: datetime | None
    file_counts: FileCounts

    def status(self) -> Literal["in_progress", "cancelled", "failed", "completed"]:
        """In progress while any of its files is; then cancelled if asked to, failed if every
        file failed, else completed."""
        counts = self.file_counts
        if counts.in_progress:
            return "in_progress"
        if self.cancel_requested_at is not None:
            return "cancelled"
        if counts.total and counts.failed == counts.total:
            return "failed"
        return "completed"
