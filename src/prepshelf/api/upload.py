"""Streaming multipart upload: bytes go straight to blob storage, hashed on the way.

Starlette's form parser spools a file to a temporary file before the route sees it, which
writes every byte twice; this parser writes each byte once and never holds the file in memory.
Hashing and writing run in a thread, one block behind the parser (`_OffloadedWriter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import quote

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from prepshelf.errors import InvalidRequestError, PayloadTooLargeError, PrepshelfError
from prepshelf.store.blobs import BlobStore, BlobWriter

log = logging.getLogger(__name__)

_MAX_FIELD_BYTES = 64 * 1024
_MAX_PARTS = 16
_MAX_PART_HEADER_BYTES = 16 * 1024  # all header lines of one part together
_MAX_BOUNDARY_CHARS = 256  # python-multipart's own ceiling (RFC 2046 says 70)
# Per request: the file plus room for the other fields and the multipart framing.
MAX_OVERHEAD_BYTES = 1024 * 1024
# The file part goes to the blob writer in blocks of this size: big enough that the handoff to
# a thread costs little per byte, small enough that two blocks per upload are no memory.
_BLOCK_BYTES = 1024 * 1024


@dataclass
class UploadResult:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0
    sha256: str | None = None


class _OffloadedWriter:
    """Feeds a `BlobWriter` from a thread, one block in flight.

    sha256 and the disk write (or the wait for an S3 part) of block N run in a thread while
    the event loop receives and parses block N+1: the loop spends about 40 % less CPU on a
    large upload and never waits on S3, so it stays free for other requests, and with a spare
    core the hashing overlaps the transfer (bench/ack.py). Hashing and writing release the GIL.
    The writer is opened in the thread too, with the first block: creating a file waits for
    the filesystem's journal, which the database's fsyncs keep busy, and cost the loop about
    a sixth of its time in a burst of small uploads. A small file is written and committed in
    one trip to the thread. Memory: the block being filled plus the one being written.
    """

    def __init__(self, open_writer: Callable[[], BlobWriter]) -> None:
        self._open = open_writer
        self._writer: BlobWriter | None = None
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        self._in_flight: asyncio.Future[None] | None = None
        self.bytes_received = 0

    def add(self, data: bytes, start: int, end: int) -> None:
        # A view of the parser's input avoids a copy; `bytes` cannot change under it.
        piece = memoryview(data)[start:end] if type(data) is bytes else bytes(data[start:end])
        self._pending.append(piece)
        self._pending_bytes += end - start
        self.bytes_received += end - start

    async def flush(self) -> None:
        """Hand the pending bytes to the thread once a block is full."""
        if self._pending_bytes < _BLOCK_BYTES:
            return
        pieces = self._take()
        await self._wait()
        self._in_flight = asyncio.get_running_loop().run_in_executor(None, self._write, pieces)

    def _take(self) -> list[bytes | memoryview]:
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        return pieces

    def _write(self, pieces: list[bytes | memoryview]) -> None:
        if self._writer is None:
            self._writer = self._open()
        if pieces:  # joined here, in the thread: one block per write call, the copy off the loop
            self._writer.write(b"".join(pieces))

    def _write_and_commit(self, pieces: list[bytes | memoryview]) -> str:
        self._write(pieces)
        assert self._writer is not None
        return self._writer.commit()

    async def _wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            await in_flight

    async def commit(self) -> str:
        """Write what is left; returns the sha256 hex digest."""
        pieces = self._take()
        await self._wait()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._write_and_commit, pieces)

    async def abort(self) -> None:
        # Never close the writer under a write still running; the upload is failing anyway,
        # so the first error is the one reported.
        with contextlib.suppress(Exception):
            await self._wait()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.abort)


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None
    value: bytearray = field(default_factory=bytearray)
    writer: _OffloadedWriter | None = None
    ended: bool = False


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
    if declared and declared.isdigit() and int(declared) > max_bytes + MAX_OVERHEAD_BYTES:
        raise PayloadTooLargeError(_too_large(max_bytes), param="file")

    result = UploadResult()
    state: dict[str, _Part] = {}
    file_part: list[_Part] = []  # the `file` part, kept until its writer is committed
    header_field, header_value = bytearray(), bytearray()
    errors: list[Exception] = []
    parts = [0]
    header_bytes = [0]

    def on_part_begin() -> None:
        state["part"] = _Part()
        parts[0] += 1
        header_bytes[0] = 0
        if parts[0] > _MAX_PARTS:
            errors.append(InvalidRequestError(f"More than {_MAX_PARTS} form fields"))

    def count_header(end: int, start: int) -> bool:
        header_bytes[0] += end - start
        if header_bytes[0] <= _MAX_PART_HEADER_BYTES:
            return True
        errors.append(
            InvalidRequestError(f"A form part's headers exceed {_MAX_PART_HEADER_BYTES} bytes")
        )
        return False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        if count_header(end, start):
            header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if count_header(end, start):
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
            if file_part:
                errors.append(InvalidRequestError("Only one 'file' part is allowed", param="file"))
                return
            part.writer = _OffloadedWriter(partial(blobs.open_writer, blob_key))
            file_part.append(part)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = state["part"]
        if part.writer is not None:
            part.writer.add(data, start, end)
            if part.writer.bytes_received > max_bytes:
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
            part.ended = True  # committed by the loop below: the callbacks cannot await
        elif part.name:
            result.fields[part.name] = part.value.decode("utf-8", "replace")

    async def drain() -> None:
        """After each parser.write: pass full blocks on; commit the file once its part ended."""
        if not file_part or file_part[0].writer is None:
            return
        part, writer = file_part[0], file_part[0].writer
        if not part.ended:
            await writer.flush()
            return
        part.writer = None
        result.sha256 = await writer.commit()
        result.size = writer.bytes_received
        result.filename = part.filename or "upload"

    try:
        boundary = params[b"boundary"]
        if not 1 <= len(boundary) <= _MAX_BOUNDARY_CHARS:
            raise InvalidRequestError(
                f"The multipart boundary must be 1 to {_MAX_BOUNDARY_CHARS} characters",
                param="file",
            )
        parser = MultipartParser(
            boundary,
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
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + MAX_OVERHEAD_BYTES:
                raise PayloadTooLargeError(_too_large(max_bytes), param="file")
            parser.write(chunk)
            if errors:
                raise errors[0]
            await drain()
        parser.finalize()
        await drain()
        if result.sha256 is None:
            cut = " (the body ended inside it)" if file_part else ""
            raise InvalidRequestError(f"Missing the 'file' part{cut}", param="file")
    except BaseException as exc:
        # Every way out (bad framing, a cut-off or stalled body, a disconnect, cancellation)
        # leaves nothing on disk: the temporary part file or the committed blob goes.
        await asyncio.shield(_discard(file_part, result, blobs, blob_key))
        if isinstance(exc, PrepshelfError) or not isinstance(exc, Exception):
            raise
        raise InvalidRequestError(f"Malformed multipart body: {exc}", param="file") from exc
    return result


async def _discard(
    file_part: list[_Part], result: UploadResult, blobs: BlobStore, blob_key: str
) -> None:
    try:
        if file_part and file_part[0].writer is not None:
            await file_part[0].writer.abort()
        if result.sha256 is not None:
            await asyncio.to_thread(blobs.delete, blob_key)
    except Exception:  # the client's error is the one to report; the sweeper retries later
        log.warning("could not discard the partial upload %s", blob_key, exc_info=True)


def _too_large(max_bytes: int) -> str:
    return f"File is larger than the upload limit of {max_bytes} bytes"


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the exact name as RFC 5987 `filename*`."""
    fallback = "".join(
        ch if " " <= ch <= "~" and ch not in '"\\;%' else "_" for ch in filename
    ).strip()
    encoded = quote(filename, safe="")
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{encoded}"
