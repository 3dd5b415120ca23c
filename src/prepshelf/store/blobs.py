"""Blob storage behind one small interface; the local directory implementation.

Writers stream: bytes go to a temporary file beside the target while being hashed, and the
file is renamed into place only when complete, so a reader never sees half a blob.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol


class BlobWriter(Protocol):
    bytes_written: int

    def write(self, data: bytes) -> None: ...
    def commit(self) -> str: ...  # returns the sha256 hex digest
    def abort(self) -> None: ...


class BlobStore(Protocol):
    def open_writer(self, key: str) -> BlobWriter: ...
    def path(self, key: str) -> Path: ...
    def delete(self, key: str) -> None: ...


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
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return target

    def open_writer(self, key: str) -> BlobWriter:
        return _LocalWriter(self.path(key))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
