"""What any job is to the transitions every kind shares, and the ingest job as claimed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
