"""A /v1/batches batch as its worker sees it: the batch, its job and its checkpointed slices.

A batch's status moves validating → in_progress → finalizing → completed, or ends failed,
expired or cancelled (through cancelling). These are the columns the worker reads, typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

BatchStatus = Literal[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
]
# How a batch ends when its worker stops before every slice ran.
StopReason = Literal["cancelled", "expired"]


@dataclass(frozen=True)
class Batch:
    """A batch's row: what `/v1/batches` shows, and what its worker reads."""

    id: str
    project_id: str
    endpoint: str  # the URL every request line names
    input_file_id: str
    completion_window: str
    status: BatchStatus
    job_id: str
    model: str | None  # set from the first line that names one
    metadata: dict[str, str] | None
    errors: dict[str, Any] | None  # validation's errors, as OpenAI's {"object": "list", …}
    output_file_id: str | None
    error_file_id: str | None
    # Request counts and token usage, added as slices finish.
    total: int
    completed: int
    failed: int
    input_tokens: int
    output_tokens: int
    # Each status stamps its own time.
    created_at: datetime
    expires_at: datetime
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    expired_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None


@dataclass(frozen=True)
class BatchJob:
    """The batch's row of `jobs`."""

    id: str
    status: str
    attempts: int
    worker: str | None


@dataclass(frozen=True)
class SlicePlan:
    """One embedding work unit cut by validation: `n_lines` requests from a byte offset."""

    slice_no: int
    start_line: int  # 1-based physical line of its first request
    start_offset: int
    n_lines: int


@dataclass(frozen=True)
class BatchSlice(SlicePlan):
    """A slice as checkpointed: done once its part blobs are written and its counts added."""

    done: bool = False


@dataclass(frozen=True)
class StopState:
    """What decides whether the worker stops between slices."""

    status: BatchStatus
    expired: bool
    cancel_requested: bool
