"""Sources a sync reads: a server-side folder or an S3-compatible prefix, only under the roots
the operator allows (PREPSHELF_SYNC_ROOTS).

A source is named by a URI: an absolute folder path (canonical: symlinks resolved), or
`s3://bucket/prefix`. The allow-list is checked when a schedule is written and again when it
runs (the operator may have narrowed it since). Inside a folder, symbolic links and hidden
names (starting with ".") are skipped, and every file is opened without following links and
checked to still lie under the root once open, so a link swapped in mid-sync cannot read
outside it. Each entry carries a cheap change stamp (size and mtime, or the S3 ETag): an
entry whose stamp did not change since the last sync is not even read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, Protocol

from prepshelf.errors import InvalidRequestError
from prepshelf.settings import Settings

MAX_PATH_CHARS = 512  # the `source` attribute holds the path (OpenAI's attribute limit)


class SourceError(Exception):
    """The source could not be read; `retryable` when it is worth trying again later."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class SourceEntry:
    path: str  # relative to the source, "/"-separated
    size: int
    stamp: str  # changes whenever the bytes may have changed


class SourceReader(Protocol):
    uri: str

    def entries(self) -> Iterator[SourceEntry]: ...
    def open(self, path: str) -> AbstractContextManager[BinaryIO]: ...


def _is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _s3_parts(uri: str, param: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    parts = [p for p in prefix.split("/") if p]
    if not bucket or any(p in (".", "..") for p in parts):
        raise InvalidRequestError(f"Invalid S3 source {uri[:200]!r}", param=param)
    return bucket, "/".join(parts)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_source(source: str, roots: list[str], *, param: str = "params.source") -> str:
    """The canonical URI of `source`, or a 400 when it is malformed or not allowed."""
    if "\x00" in source or len(source) > 1024:
        raise InvalidRequestError("Invalid source", param=param)
    if not roots:
        raise InvalidRequestError(
            "Source syncs are off on this server: the operator allows no sources "
            "(PREPSHELF_SYNC_ROOTS)",
            param=param,
        )
    if _is_s3(source):
        bucket, prefix = _s3_parts(source, param)
        canonical = f"s3://{bucket}/{prefix}".rstrip("/")
        allowed = [_s3_parts(r, "sync_roots") for r in roots if _is_s3(r)]
        if not any(b == bucket and (not p or _under(prefix, p)) for b, p in allowed):
            raise InvalidRequestError(
                f"Source {canonical!r} is not under an S3 prefix this server allows",
                param=param,
            )
        return canonical
    if not os.path.isabs(source):
        raise InvalidRequestError(
            "A folder source must be an absolute path (or s3://bucket/prefix)", param=param
        )
    real = os.path.realpath(source)
    folders = [os.path.realpath(r) for r in roots if not _is_s3(r)]
    if not any(_under(real, root) for root in folders):
        raise InvalidRequestError(
            f"Folder {source[:200]!r} is not under a folder this server allows", param=param
        )
    if not os.path.isdir(real):
        raise InvalidRequestError(f"Folder {source[:200]!r} does not exist", param=param)
    return real


def open_source(uri: str, settings: Settings) -> SourceReader:
    """A reader for a canonical source URI, refused if the allow-list no longer covers it."""
    try:
        canonical = resolve_source(uri, settings.sync_roots)
    except InvalidRequestError as exc:
        raise SourceError(exc.message) from exc
    if _is_s3(canonical):
        from prepshelf.store.blob_factory import build_s3_client
        from prepshelf.store.sources_s3 import S3Source

        bucket, prefix = _s3_parts(canonical, "source")
        return S3Source(build_s3_client(settings), uri=canonical, bucket=bucket, prefix=prefix)
    return FolderSource(canonical)


def usable_path(path: str) -> str | None:
    """Why a listed path cannot become a file of the store, or None when it can."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if len(path) > MAX_PATH_CHARS:
        return f"the path is longer than {MAX_PATH_CHARS} characters"
    return None


def hidden(path: str) -> bool:
    return any(part.startswith(".") for part in PurePosixPath(path).parts)


class FolderSource:
    def __init__(self, root: str) -> None:
        self.uri = root
        self._root = root

    def entries(self) -> Iterator[SourceEntry]:
        if not os.path.isdir(self._root):
            raise SourceError(f"folder {self._root} does not exist (or is not mounted)")

        def fail(exc: OSError) -> None:
            raise SourceError(f"cannot list {exc.filename}: {exc.strerror}", retryable=True)

        for folder, dirs, files in os.walk(self._root, onerror=fail, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                try:
                    info = os.lstat(full)
                except FileNotFoundError:  # removed while we walked
                    continue
                if not stat.S_ISREG(info.st_mode):  # links, sockets, devices
                    continue
                rel = os.path.relpath(full, self._root).replace(os.sep, "/")
                yield SourceEntry(rel, info.st_size, f"{info.st_size}:{info.st_mtime_ns}")

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        full = os.path.join(self._root, *PurePosixPath(path).parts)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise SourceError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            opened = os.path.realpath(f"/proc/self/fd/{fd}") if os.path.isdir("/proc") else full
            if not _under(opened, self._root) or not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SourceError(f"{path} is no longer a regular file under the source")
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as fh:
            yield fh
