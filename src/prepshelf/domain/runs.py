"""A run: one execution of scheduled kinds of work (a source sync, an evaluation run).

A run is an ordinary job (a row of `jobs`, visible in /v1/jobs, events, /ui and metrics);
these are the columns that work needs, typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

RunKind = Literal["source_sync", "eval_run"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class RunJob:
    id: str
    project_id: str
    kind: str
    status: JobStatus
    stage: str | None
    attempts: int
    worker: str | None
    cancel_requested: bool
    vector_store_id: str | None
    schedule_id: str | None
    scheduled_for: datetime | None
    eval_run_id: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    created_at: datetime

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES
