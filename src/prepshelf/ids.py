"""Object ids in OpenAI's shapes: `file-…`, `vs_…`, `vsfb_…`, plus our `job_…`."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def _random(n: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_file_id() -> str:
    return f"file-{_random()}"


def new_vector_store_id() -> str:
    return f"vs_{_random()}"


def new_batch_id() -> str:
    return f"vsfb_{_random()}"


def new_job_id() -> str:
    return f"job_{_random()}"
