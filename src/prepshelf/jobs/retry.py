"""When a queue message goes back on the shelf, and when.

The ingest task decides itself (it knows the fault and our attempt count) and signals the
queue with `RequeueJob`; the strategy only turns that into procrastinate's RetryDecision.
Everything else finishes the queue message: the job row already says how it ended.
"""

from __future__ import annotations

from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job

from prepshelf.pipeline.http_retry import backoff_delay

__all__ = ["RequeueJob", "RequeueStrategy", "backoff_delay"]


class RequeueJob(Exception):
    """Put the queue message back, to run again after `delay_s` seconds.

    `yield_turn`: the job gave its worker to waiting jobs (fair share); its queue priority
    drops by one, so every job that waited runs before it comes back (the queue takes the
    highest priority first, then the oldest).
    """

    def __init__(self, reason: str, delay_s: float = 0.0, *, yield_turn: bool = False) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.yield_turn = yield_turn


class RequeueStrategy(BaseRetryStrategy):
    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RequeueJob):
            priority = job.priority - 1 if exception.yield_turn else None
            return RetryDecision(retry_in={"seconds": round(exception.delay_s)}, priority=priority)
        return None
