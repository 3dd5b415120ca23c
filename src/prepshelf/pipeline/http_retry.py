"""When a call to a model server (an upstream) is tried again, and how long to wait first.

Shared by every caller of an OpenAI-compatible server (the remote embedder, the upstream
client) and by the job queue's own requeue delays, so "retry with backoff, never sooner than
Retry-After" means the same thing everywhere.

- Transient: timeouts, connection errors, HTTP 408/425/429 and every 5xx. They may well
  succeed later, so they are retried with exponential backoff and jitter.
- Permanent: every other 4xx (bad request, bad key, unknown model), and answers that are not
  what the endpoint promises. Retrying cannot change them.
"""

from __future__ import annotations

import email.utils
import random
import time

import httpx

TRANSIENT_STATUSES = frozenset({408, 425, 429})


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is worth another try (408/425/429 and every 5xx)."""
    return status in TRANSIENT_STATUSES or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, retry_after_s: float | None = None
) -> float:
    """Seconds to wait before try `attempt + 1`: exponential backoff with jitter.

    The ceiling doubles per attempt (base_s, 2·base_s, … up to max_s) and the delay is drawn
    from its upper half, so callers that failed together spread out but none retries at
    once. A server's Retry-After is a floor, even above max_s: it knows when it takes us back.
    """
    ceiling = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def snippet(resp: httpx.Response, limit: int = 200) -> str:
    """The start of an answer's body on one line, for an error message."""
    text = resp.text.strip().replace("\n", " ")
    return text[:limit] or resp.reason_phrase
