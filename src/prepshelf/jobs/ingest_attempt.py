"""One worker's attempt at an ingest job: the job as claimed, and where the attempt is now."""

from __future__ import annotations

from dataclasses import dataclass

from prepshelf.domain.jobs import IngestJob
from prepshelf.jobs.stage_clock import StageClock


@dataclass
class IngestAttempt:
    """The claimed job (frozen), its stage clock (the stage the attempt is in, written to the
    row lazily: a fault is reported with the stage it happened in) and the file's name once
    read (for the error's wording)."""

    job: IngestJob
    clock: StageClock
    filename: str | None = None

    @property
    def stage(self) -> str | None:
        return self.clock.stage
