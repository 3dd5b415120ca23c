"""One worker's attempt at an ingest job: the job as claimed, and where the attempt is now."""

from __future__ import annotations

from dataclasses import dataclass

from prepshelf.domain.jobs import IngestJob


@dataclass
class IngestAttempt:
    """The claimed job (frozen) with the two things the attempt learns as it goes: the stage
    it is in (set right after the row's, so a fault is reported with the stage it happened
    in) and the file's name once read (for the error's wording)."""

    job: IngestJob
    stage: str | None
    filename: str | None = None

    @classmethod
    def of(cls, job: IngestJob) -> IngestAttempt:
        return cls(job=job, stage=job.stage)
