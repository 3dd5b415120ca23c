"""How a failed job says what happened: one wording for every kind of job.

    <subject>: <stage>[, <where>]: <reason>

`subject` names what failed (a file's name, `batch <id>`, `source_sync <path>`); `where`
pins the place inside it (`batch 3, chunk_index 384`, `segment 2`). Dashboards, the CLI and
tests read messages in this shape.
"""

from __future__ import annotations

from typing import Any


def job_error_message(subject: str, stage: str, reason: str, **where: Any) -> str:
    place = "".join(f", {key} {value}" for key, value in where.items())
    return f"{subject}: {stage}{place}: {reason}"


def gave_up(message: str, attempts: int) -> str:
    """A transient fault's message once no attempts are left."""
    return f"{message} (gave up after {attempts} attempts)"
