"""What stops an ingest job: a cancel (or its file leaving the store), or a stage's error."""

from __future__ import annotations

from typing import Any


class JobCancelled(Exception):
    """The job was cancelled, or its file left the store, while it ran."""


class StageError(Exception):
    def __init__(self, stage: str, cause: BaseException, **where: Any) -> None:
        super().__init__(str(cause))
        self.stage, self.cause, self.where = stage, cause, where
