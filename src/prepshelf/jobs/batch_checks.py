"""Validation's verdict on a batch's input: duplicate custom_ids, and the error list and
job error a malformed file fails with (the first 100 errors, then a count)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from prepshelf.jobs.batch_lines import RequestLine

MAX_REPORTED_ERRORS = 100


def mark_duplicates(lines: list[RequestLine], first_seen: list[str]) -> None:
    """Flag each line whose custom_id an earlier line used.

    `first_seen`: the custom_ids of `lines` not seen in earlier chunks, each once. A line
    that is malformed for another reason still claims its custom_id.
    """
    fresh = Counter(first_seen)
    for ln in lines:
        if ln.error is None and ln.custom_id is not None:
            if fresh[ln.custom_id]:
                fresh[ln.custom_id] -= 1
            else:
                ln.error = {
                    "code": "duplicate_custom_id",
                    "message": f"Line {ln.line_no}: custom_id "
                    f"{ln.custom_id!r} is used by an earlier line",
                    "param": "custom_id",
                    "line": ln.line_no,
                }
        elif fresh[ln.custom_id or ""]:
            fresh[ln.custom_id or ""] -= 1


@dataclass
class ValidationReport:
    total: int = 0  # request lines read
    n_errors: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # the ones reported

    def record(self, ln: RequestLine) -> bool:
        """Count one checked line; True when it is to be embedded (no error in the file yet)."""
        if ln.error is not None:
            self.n_errors += 1
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append(ln.error)
            return False
        return not self.n_errors

    def finish(self) -> bool:
        """Close the report once every line is read; True when the batch must fail."""
        if self.total == 0:
            self.n_errors = 1
            self.errors.append(
                {
                    "code": "empty_file",
                    "message": "The input file contains no requests",
                    "param": None,
                    "line": None,
                }
            )
        if self.n_errors > len(self.errors):
            self.errors.append(
                {
                    "code": "too_many_errors",
                    "message": f"{self.n_errors} lines are malformed; the first "
                    f"{MAX_REPORTED_ERRORS} are listed",
                    "param": None,
                    "line": None,
                }
            )
        return self.n_errors > 0

    def job_error(self, batch_id: str) -> dict[str, Any]:
        """The error of the batch's job when its file is malformed."""
        return {
            "code": "invalid_batch_file",
            "message": f"batch {batch_id}: the input file has {self.n_errors} "
            "malformed line(s); see the batch's errors",
            "stage": "parsing",
        }
