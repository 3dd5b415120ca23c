"""One retry rule for every job kind: a transient fault puts the job back on the shelf with
backoff while attempts remain; anything else, or the last attempt, ends it failed.

Transient: the database went away (psycopg.OperationalError), or an error that says it is
(`retryable`: a vendor or upstream timeout, 429, 5xx, a source that did not answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import psycopg

from prepshelf.jobs.retry import RequeueJob, backoff_delay
from prepshelf.settings import Settings


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError) or bool(getattr(exc, "retryable", False))


async def retry_if_transient(
    settings: Settings,
    *,
    attempts: int,
    transient: bool,
    message: str,
    release: Callable[[], Awaitable[None]],
    retry_after_s: float | None = None,
) -> None:
    """When the fault is transient and attempts remain: `release` the job (its row back to
    queued, progress kept) and raise RequeueJob after the backoff. Otherwise return: the
    caller ends the job failed."""
    if not transient or attempts >= settings.max_attempts:
        return
    delay = backoff_delay(
        attempts,
        base_s=settings.retry_base_delay_s,
        max_s=settings.retry_max_delay_s,
        retry_after_s=retry_after_s,
    )
    await release()
    raise RequeueJob(message, delay)
