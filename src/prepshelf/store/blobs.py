"""Blob storage behind one small interface; the local directory implementation.

Writers stream: bytes go to a temporary file beside the target while being hashed, and the
file is renamed into place only when complete, so a reader never sees half a blob.
Readers stream too (`open_reader`); code that needs a real file (the sandboxed parser) asks
for `local_copy`, which is the blob itself here and a temporary download for S3
(`store/blobs_s3.py`). `path()` exists only where blobs are local files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class BlobInfo:
    key: str
    modified: datetime
    partial: bool = False  # an unfinished upload (temporary file / open multipart upload)


class BlobWriter(Protocol):
    bytes_written: int

    def write(self, data: bytes) -> None: ...
    def commit(self) -> str: ...  # returns the sha256 hex digest
    def abort(self) -> None: ...


class BlobStore(Protocol):
    def open_writer(self, key: str) -> BlobWriter: ...
    def open_reader(self, key: str) -> AbstractContextManager[BinaryIO]: ...
    def local_copy(self, key: str) -> AbstractContextManager[Path]: ...
    def path(self, key: str) -> Path: ...  # local stores only; others raise
    def delete(self, key: str) -> None: ...
    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]: ...
    def discard_partial(self, info: BlobInfo) -> None: ...


class _LocalWriter:
    def __init__(self, target: Path) -> None:
        self._target = target
        self._tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        target.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        self._hash = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self.bytes_written += len(data)

    def commit(self) -> str:
        self._fh.close()
        os.replace(self._tmp, self._target)
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs as files under one directory; keys are relative paths we generate ourselves."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        # Lexically: the keys are ours and nothing but us writes links under the root, so a
        # `..` is all there is to refuse; resolve() cost a system call per path component on
        # every upload and read.
        target = Path(os.path.normpath(self.root / key))
        if not target.is_relative_to(self.root):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return target

    def open_writer(self, key: str) -> BlobWriter:
        return _LocalWriter(self.path(key))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    @contextmanager
    def open_reader(self, key: str) -> Iterator[BinaryIO]:
        with open(self.path(key), "rb") as fh:
            yield fh

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        yield self.path(key)

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        base = self.path(prefix)
        if not base.is_dir():
            return
        for entry in base.rglob("*"):
            try:
                if not entry.is_file():
                    continue
                modified = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
            except FileNotFoundError:  # removed while we walked
                continue
            rel = entry.relative_to(self.root).as_posix()
            yield BlobInfo(rel, modified, partial=entry.name.endswith(".part"))

    def discard_partial(self, info: BlobInfo) -> None:
        self.path(info.key).unlink(missing_ok=True)
