"""Object ids in OpenAI's shapes: `file-…`, `vs_…`, `vsfb_…`, `eval_…`, `evalrun_…`, plus our
`job_…` and `sched_…`."""

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


def new_schedule_id() -> str:
    return f"sched_{_random()}"


def new_eval_id() -> str:
    return f"eval_{_random()}"


def new_eval_run_id() -> str:
    return f"evalrun_{_random()}"


def new_output_item_id() -> str:
    return f"outputitem_{_random()}"
