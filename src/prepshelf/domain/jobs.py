"""What a job is: as `/v1/jobs` shows it, to the transitions every kind shares, and the
ingest job as claimed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class JobRef(Protocol):
    """The fields the shared transitions (store/jobs.py: release, fail, succeed) read: which
    job, which attempt of it, and on which worker, for the job's attempt log."""

    @property
    def id(self) -> str: ...

    @property
    def attempts(self) -> int: ...

    @property
    def worker(self) -> str | None: ...


@dataclass(frozen=True)
class JobAttempt:
    """A job named only by what the shared transitions read (e.g. an archive settled by its
    last member's transaction)."""

    id: str
    attempts: int
    worker: str | None


@dataclass(frozen=True)
class StageTimes:
    """Stage times a worker measured itself, carried by a write that brings the job row up to
    date: `closed` holds the seconds of every stage that ended since the row was last written
    (whether or not the row ever showed it), `stage` is the one running now (None once the
    job is finished), begun `started_ago_s` ago."""

    stage: str | None
    started_ago_s: float
    closed: dict[str, float]


@dataclass(frozen=True)
class WholeFileCheckpoint:
    """The one checkpoint of a file embedded at once, recorded by the write that finishes
    its job: `chunks` stored with vectors, `computed` of them by the model (the rest from the
    cache), and the model's own seconds (`timings`, added to stage_durations)."""

    chunks: int
    computed: int
    timings: dict[str, float]


@dataclass(frozen=True)
class IngestJob:
    """An ingest job as its worker claimed it: one file of one vector store."""

    id: str
    project_id: str
    vector_store_id: str
    file_id: str
    file_batch_id: str | None
    attempts: int  # this attempt included
    worker: str | None
    stage: str | None  # where an earlier attempt stopped; None before the first
    chunks_stored: bool  # an earlier attempt stored every chunk: embedding resumes


@dataclass(frozen=True)
class Job:
    """A job as `/v1/jobs` shows it: the visible twin of one procrastinate job.

    Its parent, if any, is a vector-store file batch (`file_batch_id`, ingest jobs) or a
    /v1/batches batch (`batch_id`), never both (a CHECK in migration 0072)."""

    id: str
    project_id: str
    kind: str  # ingest_file, embed_batch, eval_run, source_sync, …
    status: str  # queued, running, succeeded, failed, cancelled
    stage: str | None
    progress_done: int
    progress_total: int | None
    progress_unit: str | None
    attempts: int
    attempt_log: list[dict[str, Any]]
    error: dict[str, Any] | None
    result: dict[str, Any] | None  # an archive: its members; a scan: what OCR did
    worker: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    stage_durations: dict[str, float]
    checkpoints_embedded: int
    checkpoints_reused: int
    embeddings_computed: int
    embeddings_cached: int
    cancel_requested: bool
    vector_store_id: str | None
    file_id: str | None
    file_batch_id: str | None
    batch_id: str | None
    # Runs of schedules and evals: what started them, and with which parameters.
    schedule_id: str | None
    scheduled_for: datetime | None
    eval_run_id: str | None
    params: dict[str, Any] | None


@dataclass(frozen=True)
class JobEvent:
    """One change of a job row as `/v1/events` streams it (written by a trigger on `jobs`)."""

    id: int
    txid: str  # the writing transaction: events are read in (txid, id) order
    type: str  # job.created, job.<status>, job.stage, job.progress, job.cancel_requested
    data: dict[str, Any]  # the job's state after the change
    created_at: datetime
