"""A schedule: a cron expression in a time zone that starts one kind of work with its params."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

ScheduleKind = Literal["source_sync", "eval_run"]
SCHEDULE_KINDS: tuple[ScheduleKind, ...] = ("source_sync", "eval_run")
# What happens to due times that pass while no worker ran, or while the schedule's previous
# run was still going: they are collapsed into one run, started as soon as possible.
CATCH_UP_POLICY = "once"


@dataclass(frozen=True)
class Schedule:
    id: str
    project_id: str
    name: str | None
    kind: ScheduleKind
    params: dict[str, Any]
    cron: str
    timezone: str
    paused_at: datetime | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @property
    def status(self) -> Literal["active", "paused"]:
        return "paused" if self.paused_at is not None else "active"


@dataclass(frozen=True)
class SyncParams:
    """A source sync: keep `vector_store_id` in step with the files under `source`."""

    vector_store_id: str
    source: str  # an absolute folder path, or s3://bucket/prefix
    chunking_strategy: dict[str, Any]  # resolved (static) when the schedule was written

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncParams:
        return cls(
            vector_store_id=str(data["vector_store_id"]),
            source=str(data["source"]),
            chunking_strategy=dict(data["chunking_strategy"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "vector_store_id": self.vector_store_id,
            "source": self.source,
            "chunking_strategy": self.chunking_strategy,
        }


@dataclass(frozen=True)
class EvalRunParams:
    """An evaluation run: the eval's questions against a store (the eval's own by default)."""

    eval_id: str
    vector_store_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalRunParams:
        store = data.get("vector_store_id")
        return cls(eval_id=str(data["eval_id"]), vector_store_id=str(store) if store else None)

    def to_json(self) -> dict[str, Any]:
        return {"eval_id": self.eval_id, "vector_store_id": self.vector_store_id}
