"""parse_in_subprocess: results, errors, timeouts, memory caps and crashes across a spawn child."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.unit import sandbox_targets

from prepshelf.errors import InvalidFileError, UnsupportedFileError
from prepshelf.pipeline.parse import MediaFileError
from prepshelf.pipeline.sandbox import parse_in_subprocess, shutdown_sandbox
from support.corpus import CORPUS, needs_corpus

LIMIT = 1024 * 2**20


@pytest.fixture(autouse=True, scope="module")
def _stop_children() -> Iterator[None]:
    yield
    shutdown_sandbox()


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_text("Hello   sandbox\r\n\r\n\r\nworld\n", encoding="utf-8")
    return path


def test_errors_pickle_round_trip() -> None:
    error = UnsupportedFileError("content is a PNG image, not a document", param="file")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is UnsupportedFileError
    assert (clone.message, clone.param, str(clone)) == (error.message, "file", str(error))


def test_parses_in_child(text_file: Path) -> None:
    doc = parse_in_subprocess(text_file, "hello.txt", timeout_s=60, memory_limit_bytes=LIMIT)
    assert (doc.text, doc.kind, doc.encoding) == ("Hello sandbox\n\nworld", "text", "utf-8")


@needs_corpus
def test_real_parse_errors_keep_class_and_message() -> None:
    with pytest.raises(InvalidFileError, match=r"^encrypted PDF: a user password is required"):
        parse_in_subprocess(
            CORPUS / "bad" / "r2-user-password.pdf",
            "r2.pdf",
            timeout_s=60,
            memory_limit_bytes=LIMIT,
        )
    with pytest.raises(MediaFileError, match=r"^content is WAV audio: audio and video are"):
        parse_in_subprocess(
            CORPUS / "bad" / "CantinaBand3.txt",
            "CantinaBand3.txt",
            timeout_s=60,
            memory_limit_bytes=LIMIT,
        )


def test_child_error_arrives_unchanged(text_file: Path) -> None:
    with pytest.raises(InvalidFileError, match=r"^custom reason$") as info:
        parse_in_subprocess(
            text_file,
            "x",
            timeout_s=60,
            memory_limit_bytes=LIMIT,
            _target=sandbox_targets.raise_invalid,
        )
    assert info.value.param == "file"
    with pytest.raises(InvalidFileError, match="parser failed: ValueError: boom"):
        parse_in_subprocess(
            text_file,
            "x",
            timeout_s=60,
            memory_limit_bytes=LIMIT,
            _target=sandbox_targets.raise_value_error,
        )


def test_warm_child_is_reused_even_after_a_file_error(text_file: Path) -> None:
    def pid() -> str:
        doc = parse_in_subprocess(
            text_file,
            "x",
            timeout_s=60,
            memory_limit_bytes=LIMIT,
            _target=sandbox_targets.report_pid,
        )
        return doc.text

    first = pid()
    with pytest.raises(InvalidFileError):
        parse_in_subprocess(
            text_file,
            "x",
            timeout_s=60,
            memory_limit_bytes=LIMIT,
            _target=sandbox_targets.raise_invalid,
        )
    assert pid() == first
    shutdown_sandbox()
    assert pid() != first


def test_timeout_kills_child_and_next_call_works(text_file: Path) -> None:
    # The error itself proves the child was stopped at the limit (it never returns on its own).
    with pytest.raises(InvalidFileError, match=r"^parsing took longer than 1 s \(limit\)$"):
        parse_in_subprocess(
            text_file,
            "x",
            timeout_s=1,
            memory_limit_bytes=LIMIT,
            _target=sandbox_targets.sleep_forever,
        )
    doc = parse_in_subprocess(text_file, "hello.txt", timeout_s=60, memory_limit_bytes=LIMIT)
    assert doc.text.startswith("Hello")


def test_memory_limit(text_file: Path) -> None:
    with pytest.raises(InvalidFileError, match=r"^parser ran out of memory \(limit 512 MB\)$"):
        parse_in_subprocess(
            text_file,
            "x",
            timeout_s=60,
            memory_limit_bytes=512 * 2**20,
            _target=sandbox_targets.allocate_4_gib,
        )
    assert parse_in_subprocess(text_file, "x", timeout_s=60, memory_limit_bytes=LIMIT).text


def test_crash_is_reported_and_next_call_works(text_file: Path) -> None:
    with pytest.raises(InvalidFileError, match=r"^parser process crashed \(exit code 3\)$"):
        parse_in_subprocess(
            text_file, "x", timeout_s=60, memory_limit_bytes=LIMIT, _target=sandbox_targets.crash
        )
    assert parse_in_subprocess(text_file, "x", timeout_s=60, memory_limit_bytes=LIMIT).text


def test_concurrent_callers(text_file: Path) -> None:
    def parse(_: int) -> str:
        return parse_in_subprocess(text_file, "x", timeout_s=60, memory_limit_bytes=LIMIT).text

    with ThreadPoolExecutor(max_workers=4) as pool:
        texts = list(pool.map(parse, range(12)))
    assert texts == ["Hello sandbox\n\nworld"] * 12
