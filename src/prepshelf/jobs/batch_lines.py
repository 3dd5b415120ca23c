"""Reading a batch's JSONL input: one request line at a time, checked for shape.

Blank lines are skipped (they are not requests); an overlong line is skipped unread and
reported, so memory stays bounded by `max_bytes` whatever the file holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prepshelf.domain.batches import SlicePlan

ENDPOINT = "/v1/embeddings"  # answered by the worker's own embedding model
# Answered by upstreams (docs/upstreams.md); embeddings too, when a line names an upstream model.
UPSTREAM_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
COPY_BYTES = 1024 * 1024


@dataclass
class RequestLine:
    line_no: int  # 1-based, physical
    offset: int
    custom_id: str | None = None
    body: Any = None
    error: dict[str, Any] | None = None  # the batch's error entry, set by the checks


def _read_line(fh: IO[bytes], max_bytes: int) -> tuple[bytes, bool]:
    """One line (without its newline) and whether it fitted in `max_bytes`; b'' + True at EOF."""
    data = fh.readline(max_bytes + 1)
    if len(data) <= max_bytes or data.endswith(b"\n"):
        return data, True
    while data and not data.endswith(b"\n"):  # skip the rest of an overlong line
        data = fh.readline(COPY_BYTES)
    return b"x", False


def _parse(
    raw: bytes, line_no: int, offset: int, fits: bool, max_bytes: int, endpoint: str
) -> RequestLine:
    line = RequestLine(line_no, offset)

    def err(code: str, message: str, param: str | None = None) -> RequestLine:
        line.error = {"code": code, "message": message, "param": param, "line": line_no}
        return line

    if not fits:
        return err("invalid_json_line", f"Line {line_no} is longer than {max_bytes} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return err("invalid_json_line", f"Line {line_no} is not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return err("invalid_json_line", f"Line {line_no} is not a JSON object")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return err(
            "missing_required_parameter",
            f"Line {line_no}: 'custom_id' must be a non-empty string",
            "custom_id",
        )
    line.custom_id = custom_id
    if obj.get("method") != "POST":
        return err("invalid_method", f"Line {line_no}: 'method' must be 'POST'", "method")
    if obj.get("url") != endpoint:
        return err(
            "invalid_url",
            f"Line {line_no}: 'url' must be {endpoint!r}, the batch's endpoint",
            "url",
        )
    if not isinstance(obj.get("body"), dict):
        return err("invalid_body", f"Line {line_no}: 'body' must be a JSON object", "body")
    line.body = obj["body"]
    return line


class LineScanner:
    """Reads request lines from a position; blank lines are skipped (they are not requests)."""

    def __init__(
        self, fh: IO[bytes], *, line_no: int, max_bytes: int, endpoint: str = ENDPOINT
    ) -> None:
        self.fh, self.line_no, self.max_bytes = fh, line_no, max_bytes
        self.endpoint = endpoint

    def next(self, n: int) -> list[RequestLine]:
        out: list[RequestLine] = []
        while len(out) < n:
            offset = self.fh.tell()
            raw, fits = _read_line(self.fh, self.max_bytes)
            if not raw:
                break
            self.line_no += 1
            if fits and not raw.strip():
                continue
            out.append(_parse(raw, self.line_no, offset, fits, self.max_bytes, self.endpoint))
        return out


def read_slice(
    path: Path, sl: SlicePlan, *, max_bytes: int, endpoint: str = ENDPOINT
) -> list[RequestLine]:
    """The request lines of one slice (its file offset and line count come from validation)."""
    with open(path, "rb") as fh:
        fh.seek(sl.start_offset)
        scanner = LineScanner(fh, line_no=sl.start_line - 1, max_bytes=max_bytes, endpoint=endpoint)
        return scanner.next(sl.n_lines)
