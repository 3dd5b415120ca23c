"""Streaming multipart upload: bytes go straight to blob storage, hashed on the way.

Starlette's form parser spools a file to a temporary file before the route sees it, which
writes every byte twice; this parser writes each byte once and never holds the file in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from prepshelf.errors import InvalidRequestError, PayloadTooLargeError, PrepshelfError
from prepshelf.store.blobs import BlobStore, BlobWriter

_MAX_FIELD_BYTES = 64 * 1024
_MAX_PARTS = 16
# Per request: the file plus room for the other fields and the multipart framing.
_MAX_OVERHEAD_BYTES = 1024 * 1024


@dataclass
class UploadResult:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0
    sha256: str | None = None


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None
    value: bytearray = field(default_factory=bytearray)
    writer: BlobWriter | None = None


async def receive_upload(
    request: Request, *, blobs: BlobStore, blob_key: str, max_bytes: int
) -> UploadResult:
    """Parse a multipart body; the part named `file` is written to `blob_key`."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidRequestError(
            "Expected a multipart/form-data body with a 'file' part", param="file"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + _MAX_OVERHEAD_BYTES:
        raise PayloadTooLargeError(_too_large(max_bytes), param="file")

    result = UploadResult()
    state: dict[str, _Part] = {}
    header_field, header_value = bytearray(), bytearray()
    errors: list[Exception] = []
    parts = [0]

    def on_part_begin() -> None:
        state["part"] = _Part()
        parts[0] += 1
        if parts[0] > _MAX_PARTS:
            errors.append(InvalidRequestError(f"More than {_MAX_PARTS} form fields"))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        state["part"].headers[header_field.decode("latin-1").lower()] = header_value.decode(
            "utf-8", "replace"
        )
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        part = state["part"]
        # As bytes: given a str, the parser encodes it as latin-1 and fails on UTF-8 names.
        _, disp = parse_options_header(part.headers.get("content-disposition", "").encode())
        part.name = disp.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disp:
            part.filename = disp[b"filename"].decode("utf-8", "replace")
        if part.name == "file":
            if result.sha256 is not None or part.writer is not None:
                errors.append(InvalidRequestError("Only one 'file' part is allowed", param="file"))
                return
            part.writer = blobs.open_writer(blob_key)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = state["part"]
        if part.writer is not None:
            part.writer.write(data[start:end])
            if part.writer.bytes_written > max_bytes:
                errors.append(PayloadTooLargeError(_too_large(max_bytes), param="file"))
        else:
            part.value.extend(data[start:end])
            if len(part.value) > _MAX_FIELD_BYTES:
                errors.append(
                    InvalidRequestError(f"Field {part.name!r} is too large", param=part.name)
                )

    def on_part_end() -> None:
        part = state.pop("part")
        if part.writer is not None:
            result.size = part.writer.bytes_written
            result.sha256 = part.writer.commit()
            result.filename = part.filename or "upload"
            part.writer = None
        elif part.name:
            result.fields[part.name] = part.value.decode("utf-8", "replace")

    parser = MultipartParser(
        params[b"boundary"],
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + _MAX_OVERHEAD_BYTES:
                raise PayloadTooLargeError(_too_large(max_bytes), param="file")
            parser.write(chunk)
            if errors:
                raise errors[0]
        parser.finalize()
    except Exception as exc:
        part = state.get("part")
        if part is not None and part.writer is not None:
            part.writer.abort()
        if result.sha256 is not None:
            blobs.delete(blob_key)
        if isinstance(exc, PrepshelfError):
            raise
        raise InvalidRequestError(f"Malformed multipart body: {exc}", param="file") from exc
    if result.sha256 is None:
        raise InvalidRequestError("Missing the 'file' part", param="file")
    return result


def _too_large(max_bytes: int) -> str:
    return f"File is larger than the upload limit of {max_bytes} bytes"


def safe_filename(name: str) -> str:
    """The name we store: base name only, printable characters only, at most 255 characters.

    It is only ever a label (blobs are stored under the file id), but it reaches headers,
    logs and dashboards, so path parts, control and bidi characters are dropped.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:255] if cleaned not in ("", ".", "..") else "upload"


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the exact name as RFC 5987 `filename*`."""
    fallback = "".join(
        ch if " " <= ch <= "~" and ch not in '"\\;%' else "_" for ch in filename
    ).strip()
    encoded = quote(filename, safe="")
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{encoded}"
