"""Reading and checking a /v1/batches input file: the pure parts of validation (line shapes,
duplicate custom_ids, the capped error list) and the slices it cuts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from prepshelf.jobs.batch_checks import MAX_REPORTED_ERRORS, ValidationReport, mark_duplicates
from prepshelf.jobs.batch_lines import ENDPOINT, LineScanner, RequestLine, read_slice
from prepshelf.jobs.batch_slicing import SliceCutter


def _line(custom_id: str, inputs: Any = "x", **over: Any) -> str:
    obj = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": {"input": inputs}}
    return json.dumps({**obj, **over})


def _scan(text: str, *, max_bytes: int = 1000) -> list[RequestLine]:
    return LineScanner(io.BytesIO(text.encode()), line_no=0, max_bytes=max_bytes).next(10_000)


def test_each_malformed_shape_has_its_code_and_physical_line() -> None:
    text = "\n".join(
        [
            _line("a"),
            "",
            "{not json",
            "[1]",
            json.dumps({"method": "POST", "url": ENDPOINT, "body": {}}),
            _line("b", method="GET"),
            _line("c", url="/v1/chat/completions"),
            _line("d", body=[]),
            "x" * 50,
        ]
    )
    lines = _scan(text, max_bytes=40)
    got = [
        (ln.line_no, ln.error and ln.error["code"], ln.error and ln.error["param"]) for ln in lines
    ]
    assert got == [
        (1, "invalid_json_line", None),  # longer than 40 bytes
        (3, "invalid_json_line", None),
        (4, "invalid_json_line", None),
        (5, "invalid_json_line", None),
        (6, "invalid_json_line", None),
        (7, "invalid_json_line", None),
        (8, "invalid_json_line", None),
        (9, "invalid_json_line", None),
    ]
    lines = _scan(text)
    got = [
        (ln.line_no, ln.error and ln.error["code"], ln.error and ln.error["param"]) for ln in lines
    ]
    assert got == [
        (1, None, None),
        (3, "invalid_json_line", None),
        (4, "invalid_json_line", None),
        (5, "missing_required_parameter", "custom_id"),
        (6, "invalid_method", "method"),
        (7, "invalid_url", "url"),
        (8, "invalid_body", "body"),
        (9, "invalid_json_line", None),
    ]
    assert lines[0].custom_id == "a" and lines[0].body == {"input": "x"}
    assert lines[4].custom_id == "b"  # known before the method was found wrong
    assert all(ln.error is None or ln.error["line"] == ln.line_no for ln in lines)


def test_an_overlong_line_is_skipped_and_the_next_one_read() -> None:
    text = _line("long", "y" * 5000) + "\n" + _line("after") + "\n"
    lines = _scan(text, max_bytes=200)
    assert [ln.line_no for ln in lines] == [1, 2]
    assert lines[0].error is not None and "longer than 200 bytes" in lines[0].error["message"]
    assert lines[1].error is None and lines[1].custom_id == "after"


def test_duplicates_within_and_across_chunks() -> None:
    first = _scan("\n".join([_line("a"), _line("a"), _line("b", method="GET"), _line("b")]))
    mark_duplicates(first, ["a", "b"])  # what the custom_id table returned as new
    assert [ln.error and ln.error["code"] for ln in first] == [
        None,
        "duplicate_custom_id",
        "invalid_method",  # still claims "b"
        "duplicate_custom_id",
    ]
    assert first[1].error == {
        "code": "duplicate_custom_id",
        "message": "Line 2: custom_id 'a' is used by an earlier line",
        "param": "custom_id",
        "line": 2,
    }
    later = _scan(_line("a") + "\n" + _line("c"))
    mark_duplicates(later, ["c"])  # "a" was seen in an earlier chunk
    assert [ln.error and ln.error["code"] for ln in later] == ["duplicate_custom_id", None]


def test_the_report_caps_its_errors_and_stops_cutting_at_the_first() -> None:
    report = ValidationReport()
    good = _scan(_line("ok"))[0]
    bad = _scan("{")[0]
    assert report.record(good)
    for _ in range(MAX_REPORTED_ERRORS + 5):
        assert not report.record(bad)
    assert not report.record(good)  # valid, but the batch fails anyway
    report.total = MAX_REPORTED_ERRORS + 7
    assert report.finish()
    assert len(report.errors) == MAX_REPORTED_ERRORS + 1
    assert report.errors[-1] == {
        "code": "too_many_errors",
        "message": f"{MAX_REPORTED_ERRORS + 5} lines are malformed; the first "
        f"{MAX_REPORTED_ERRORS} are listed",
        "param": None,
        "line": None,
    }
    assert report.job_error("batch_1") == {
        "code": "invalid_batch_file",
        "message": f"batch batch_1: the input file has {MAX_REPORTED_ERRORS + 5} "
        "malformed line(s); see the batch's errors",
        "stage": "parsing",
    }


def test_an_empty_file_fails_and_a_clean_one_does_not() -> None:
    empty = ValidationReport()
    assert empty.finish()
    assert [e["code"] for e in empty.errors] == ["empty_file"] and empty.n_errors == 1
    clean = ValidationReport(total=1)
    assert clean.record(_scan(_line("ok"))[0])
    assert not clean.finish() and clean.errors == []


def test_slices_cut_by_lines_and_inputs_read_back_the_same_requests(tmp_path: Path) -> None:
    rows = [_line("a"), "", _line("b", ["p", "q", "r"]), _line("c"), _line("d", [1, 2]), _line("e")]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(rows) + "\n")
    cutter = SliceCutter(max_lines=3, max_inputs=4)
    for ln in _scan(path.read_text()):
        cutter.add(ln)
    cutter.close()
    # a + b reach 4 inputs; c, d (token ids: one input), e reach 3 lines.
    assert [(s.slice_no, s.start_line, s.n_lines) for s in cutter.slices] == [(0, 1, 2), (1, 4, 3)]
    got = [
        [(ln.line_no, ln.custom_id) for ln in read_slice(path, s, max_bytes=1000)]
        for s in cutter.slices
    ]
    assert got == [[(1, "a"), (3, "b")], [(4, "c"), (5, "d"), (6, "e")]]
