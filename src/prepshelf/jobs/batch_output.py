"""Writing a batch's results: each slice's part blobs (output and error lines, replaced
whole if the slice runs again), then output.jsonl and errors.jsonl concatenated from them.

Lines follow OpenAI's batch output format; requests of slices that never ran (a cancelled
or expired batch) get an error line each.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prepshelf.domain.batches import BatchSlice
from prepshelf.errors import PrepshelfError
from prepshelf.jobs.batch_lines import COPY_BYTES, ENDPOINT, RequestLine, read_slice
from prepshelf.pipeline.embedding_request import EmbeddingRequest, response_body
from prepshelf.store.batch_answers import LineAnswer
from prepshelf.store.blobs import BlobStore

# Keyed by how the batch ended (a StopReason).
STOP_ERRORS: dict[str, tuple[str, str]] = {
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request executed."),
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window ended.",
    ),
}
# The files a batch ends with: (part kind, name in batches/<id>/<name>.jsonl).
OUTPUT_FILES = (("out", "output"), ("err", "errors"))


def part_key(batch_id: str, slice_no: int, kind: str) -> str:
    return f"batches/{batch_id}/part-{slice_no:07d}.{kind}.jsonl"


def output_key(batch_id: str, name: str) -> str:
    return f"batches/{batch_id}/{name}.jsonl"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _request_id() -> str:
    return f"req_{secrets.token_hex(16)}"


def _line_id() -> str:
    return f"batch_req_{secrets.token_hex(12)}"


def response_record(custom_id: str | None, status_code: int, body: Any) -> dict[str, Any]:
    """One line of the output or error file: a request and the answer it got."""
    return {
        "id": _line_id(),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": _request_id(), "body": body},
        "error": None,
    }


def error_body(problem: PrepshelfError) -> dict[str, Any]:
    return {
        "error": {
            "message": problem.message,
            "type": problem.error_type,
            "param": problem.param,
            "code": problem.code,
        }
    }


def _result_line(ln: RequestLine, req: EmbeddingRequest, vectors: list[np.ndarray]) -> bytes:
    return _dumps(response_record(ln.custom_id, 200, response_body(req, vectors)))


def _refused_line(ln: RequestLine, problem: PrepshelfError) -> bytes:
    return _dumps(response_record(ln.custom_id, problem.status_code, error_body(problem)))


def _not_run_line(ln: RequestLine, code: str, message: str) -> bytes:
    return _dumps(
        {
            "id": _line_id(),
            "custom_id": ln.custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    )


def write_parts(
    blobs: BlobStore,
    batch_id: str,
    slice_no: int,
    embedded: Iterable[tuple[RequestLine, EmbeddingRequest, list[np.ndarray]]],
    refused: list[tuple[RequestLine, PrepshelfError]],
) -> None:
    """Write one slice's part blobs; `embedded` may be lazy (lines as their vectors come)."""
    out = blobs.open_writer(part_key(batch_id, slice_no, "out"))
    err = blobs.open_writer(part_key(batch_id, slice_no, "err"))
    try:
        for ln, req, vectors in embedded:
            out.write(_result_line(ln, req, vectors))
        for ln, problem in refused:
            err.write(_refused_line(ln, problem))
        out.commit()
        err.commit()
    except BaseException:
        out.abort()
        err.abort()
        raise


def write_answer_parts(
    blobs: BlobStore, batch_id: str, slice_no: int, answers: Sequence[LineAnswer]
) -> None:
    """Write one upstream slice's part blobs from its kept answers, in input order."""
    out = blobs.open_writer(part_key(batch_id, slice_no, "out"))
    err = blobs.open_writer(part_key(batch_id, slice_no, "err"))
    try:
        for answer in answers:
            (err if answer.is_error else out).write(_dumps(answer.record))
        out.commit()
        err.commit()
    except BaseException:
        out.abort()
        err.abort()
        raise


def concat(
    blobs: BlobStore,
    batch_id: str,
    slices: list[BatchSlice],
    path: Path | None,
    final: str,
    max_bytes: int,
    *,
    endpoint: str = ENDPOINT,
    partial: Mapping[int, Sequence[LineAnswer]] | None = None,
) -> dict[str, tuple[int, str] | None]:
    """Write output.jsonl and errors.jsonl from the part blobs (streamed); size and sha each,
    None for a file left empty. `path` (the input) is needed only for a stopped batch;
    `partial` holds the answers an upstream batch's unfinished slices already got (kept,
    not reported as never run)."""
    partial = partial or {}
    result: dict[str, tuple[int, str] | None] = {}
    for kind, name in OUTPUT_FILES:
        writer = blobs.open_writer(output_key(batch_id, name))
        try:
            for sl in slices:
                if sl.done:
                    with blobs.open_reader(part_key(batch_id, sl.slice_no, kind)) as fh:
                        while data := fh.read(COPY_BYTES):
                            writer.write(data)
                    continue
                answers = partial.get(sl.slice_no, ())
                for answer in answers:
                    if answer.is_error == (kind == "err"):
                        writer.write(_dumps(answer.record))
                if kind == "err" and final in STOP_ERRORS:
                    assert path is not None
                    code, message = STOP_ERRORS[final]
                    answered = {a.line_no for a in answers}
                    for ln in read_slice(path, sl, max_bytes=max_bytes, endpoint=endpoint):
                        if ln.line_no not in answered:
                            writer.write(_not_run_line(ln, code, message))
            size = writer.bytes_written
            digest = writer.commit()
        except BaseException:
            writer.abort()
            raise
        result[name] = (size, digest) if size else None
    return result


def delete_parts(blobs: BlobStore, batch_id: str, slices: list[BatchSlice]) -> None:
    for sl in slices:
        for kind, _ in OUTPUT_FILES:
            blobs.delete(part_key(batch_id, sl.slice_no, kind))
