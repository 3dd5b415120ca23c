"""Module-level parse targets for the sandbox tests (spawned children import them by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prepshelf.errors import InvalidFileError
from prepshelf.pipeline.parse import ParsedDocument


def sleep_forever(path: Path, filename: str) -> ParsedDocument:
    time.sleep(3600)
    raise AssertionError("unreachable")


def allocate_4_gib(path: Path, filename: str) -> ParsedDocument:
    block = bytearray(4 * 2**30)
    return ParsedDocument(text=str(len(block)), kind="text", pages=None, encoding=None)


def crash(path: Path, filename: str) -> ParsedDocument:
    os._exit(3)


def raise_invalid(path: Path, filename: str) -> ParsedDocument:
    raise InvalidFileError("custom reason", param="file")


def raise_value_error(path: Path, filename: str) -> ParsedDocument:
    raise ValueError("boom")


def report_pid(path: Path, filename: str) -> ParsedDocument:
    return ParsedDocument(text=str(os.getpid()), kind="text", pages=None, encoding=None)
