"""When a queue message goes back on the shelf, and when.

The ingest task decides itself (it knows the fault and our attempt count) and signals the
queue with `RequeueJob`; the strategy only turns that into procrastinate's RetryDecision.
Everything else finishes the queue message: the job row already says how it ended.
"""

from __future__ import annotations

import random

from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job


class RequeueJob(Exception):
    """Put the queue message back, to run again after `delay_s` seconds."""

    def __init__(self, reason: str, delay_s: float = 0.0) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, retry_after_s: float | None = None
) -> float:
    """Exponential backoff with full jitter; a vendor's Retry-After is a floor."""
    ceiling = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


class RequeueStrategy(BaseRetryStrategy):
    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RequeueJob):
            return RetryDecision(retry_in={"seconds": round(exception.delay_s)})
        return None
