"""Unpack ZIP and TAR (plain, gz, bz2, xz) archives into numbered files, refusing what is unsafe.

Pure and synchronous; the worker runs `expand_archive` in the sandbox child (memory and time
limits). Members are written as `<dest>/<n>` — a member's own name never touches the file
system, so traversal is impossible by construction; names are only sanitised for display.
Declared sizes are never trusted: every byte is counted while it is decompressed, and the
limits stop the stream, not a promise in a header. Declared sizes may only refuse earlier.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol, cast

from prepshelf.errors import FileProcessingError, InvalidFileError
from prepshelf.pipeline.archive_members import (
    MemberRefused,
    printable,
    safe_member_name,
    size_text,
    special_reason,
    tar_special_reason,
)
from prepshelf.pipeline.sniff import ARCHIVE_KINDS, sniff_file

_BLOCK = 1024 * 1024
_MAX_LISTED = 50  # refusals kept by name; the rest are only counted
_STREAM_SLACK = 64 * 1024 * 1024  # tar headers and padding on top of member bytes
_SUFFIXES = {"gzip": (".gz", ".tgz"), "bzip2": (".bz2", ".tbz2"), "xz": (".xz", ".txz")}


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int  # uncompressed bytes for the whole tree of nested archives
    max_members: int  # members for the whole tree
    max_ratio: float  # uncompressed:compressed, per member (per stream for tar.gz & co)
    ratio_floor_bytes: int  # small members may be highly compressible; not checked below this
    max_depth: int  # archive levels below the uploaded file that are expanded
    max_name_component: int  # UTF-8 bytes per path component
    max_name_bytes: int  # UTF-8 bytes per member path


@dataclass(frozen=True)
class Member:
    name: str  # sanitised path inside the archive, e.g. "docs/a.md"
    staged: str  # file name under the destination folder
    size: int
    is_archive: bool


@dataclass(frozen=True)
class Refused:
    name: str
    reason: str


@dataclass
class Expansion:
    kind: str
    members: list[Member] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)  # the first _MAX_LISTED
    refused_total: int = 0
    total_bytes: int = 0

    def refuse(self, name: str, reason: str) -> None:
        self.refused_total += 1
        if len(self.refused) < _MAX_LISTED:
            self.refused.append(Refused(printable(name), reason))


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def expand_archive(
    path: Path,
    filename: str,
    *,
    dest: Path,
    limits: ArchiveLimits,
    depth: int = 0,
    used_bytes: int = 0,
    used_members: int = 0,
) -> Expansion:
    """Write the safe file members of the archive at `path` under `dest` (an empty folder).

    `depth` is the archive's own nesting level (0 = uploaded); `used_*` is what the rest of
    its tree already holds. Raises InvalidFileError naming the limit for bombs and over-full
    or too-deeply nested archives, and for an archive too corrupt to list.
    """
    if depth > limits.max_depth:
        raise InvalidFileError(nesting_message(limits.max_depth))
    kind = sniff_file(path, filename)
    if kind not in ARCHIVE_KINDS:
        raise InvalidFileError(f"not an archive: content is {kind}")
    run = _Run(dest, limits, depth, used_bytes, used_members, Expansion(kind))
    try:
        if kind == "zip":
            run.zip(path)
        else:
            run.tar_or_stream(path, filename, kind)
    except FileProcessingError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise InvalidFileError(f"corrupt {kind.upper()} archive: {exc}"[:300]) from exc
    except lzma.LZMAError as exc:
        raise InvalidFileError(f"corrupt {kind.upper()} archive: {exc}"[:300]) from exc
    return run.result


def nesting_message(max_depth: int) -> str:
    return f"archive nested more than {max_depth} levels deep (nesting limit)"


class _Run:
    def __init__(
        self,
        dest: Path,
        limits: ArchiveLimits,
        depth: int,
        used_bytes: int,
        used_members: int,
        result: Expansion,
    ) -> None:
        self.dest, self.limits, self.depth, self.result = dest, limits, depth, result
        self.byte_budget = limits.max_total_bytes - used_bytes
        self.member_budget = limits.max_members - used_members
        self.entries = 0
        self.names: set[str] = set()

    # --- limits -----------------------------------------------------------------------------

    def size_error(self) -> InvalidFileError:
        return InvalidFileError(
            f"archive expands past {size_text(self.limits.max_total_bytes)} "
            "(uncompressed-size limit; a decompression bomb?)"
        )

    def ratio_error(self, name: str | None) -> InvalidFileError:
        what = f"member {printable(name)!r}" if name else "the compressed stream"
        return InvalidFileError(
            f"{what} expands more than {self.limits.max_ratio:g}:1 "
            "(compression ratio limit; a decompression bomb?)"
        )

    def count_entry(self) -> None:
        self.entries += 1
        if self.entries > self.member_budget:
            raise InvalidFileError(
                f"archive holds more than {self.limits.max_members} members (member count limit)"
            )

    def checked_name(self, raw: str) -> str:
        name = safe_member_name(
            raw,
            max_component=self.limits.max_name_component,
            max_total=self.limits.max_name_bytes,
        )
        if name in self.names:
            raise MemberRefused("duplicate name")
        self.names.add(name)
        return name

    # --- writing ----------------------------------------------------------------------------

    def write_member(self, name: str, source: _Readable, compressed: int | None) -> None:
        """Copy one member to `<dest>/<n>` counting every byte; `compressed` enables the ratio."""
        staged = str(len(self.result.members))
        target = self.dest / staged
        written = 0
        try:
            with target.open("wb") as out:
                while block := source.read(_BLOCK):
                    written += len(block)
                    if self.result.total_bytes + written > self.byte_budget:
                        raise self.size_error()
                    if (
                        compressed is not None
                        and written > self.limits.ratio_floor_bytes
                        and written > self.limits.max_ratio * max(compressed, 1)
                    ):
                        raise self.ratio_error(name)
                    out.write(block)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        is_archive = _is_archive(target, name)
        if is_archive and self.depth + 1 > self.limits.max_depth:
            target.unlink()
            raise MemberRefused(nesting_message(self.limits.max_depth))
        self.result.total_bytes += written
        self.result.members.append(Member(name, staged, written, is_archive))

    # --- ZIP --------------------------------------------------------------------------------

    def zip(self, path: Path) -> None:
        archive_size = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > self.member_budget:
                self.entries = len(infos) - 1
                self.count_entry()
            # Declared sizes cannot make a bomb pass, but they may refuse one before any work.
            if sum(i.file_size for i in infos) > self.byte_budget:
                raise self.size_error()
            for info in infos:
                self.count_entry()
                try:
                    self.zip_member(zf, info, archive_size)
                except MemberRefused as refusal:
                    self.result.refuse(info.filename, str(refusal))

    def zip_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int) -> None:
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise MemberRefused(special_reason(mode))
        name = self.checked_name(info.filename)
        if info.flag_bits & 0x1:
            raise MemberRefused("encrypted member")
        compressed = min(info.compress_size, archive_size)
        if (
            info.file_size > self.limits.ratio_floor_bytes
            and info.file_size > self.limits.max_ratio * max(compressed, 1)
        ):
            raise self.ratio_error(info.filename)
        try:
            with zf.open(info) as source:
                self.write_member(name, source, compressed)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
            raise MemberRefused(f"corrupt member: {exc}"[:200]) from exc
        except RuntimeError as exc:  # zipfile: "File ... is encrypted"
            raise MemberRefused(f"unreadable member: {exc}"[:200]) from exc

    # --- TAR and single compressed streams -------------------------------------------------

    def tar_or_stream(self, path: Path, filename: str, kind: str) -> None:
        with path.open("rb") as raw:
            if kind == "tar":
                stream: _Readable = raw
                counted = _Counted(stream, self, raw=None)
            else:
                stream = _decompressor(kind, raw)
                counted = _Counted(stream, self, raw=raw)
            head = counted.read(tarfile.BLOCKSIZE)
            if kind != "tar" and not _is_tar_header(head):
                self.single_stream(filename, kind, head, counted)
                return
            self.tar(_Prefixed(head, counted))

    def single_stream(self, filename: str, kind: str, head: bytes, counted: _Counted) -> None:
        """`notes.txt.gz`: one member, named after the archive without its suffix."""
        self.count_entry()
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        for suffix in _SUFFIXES[kind]:
            if base.lower().endswith(suffix):
                base = base[: -len(suffix)] + (".tar" if suffix.startswith(".t") else "")
                break
        try:
            name = self.checked_name(base or "member")
            self.write_member(name, _Prefixed(head, counted), None)  # ratio: counted checks
        except MemberRefused as refusal:
            self.result.refuse(base, str(refusal))

    def tar(self, stream: _Readable) -> None:
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tf:
            try:
                for info in _tar_members(tf):
                    self.tar_member(tf, info)
            except (tarfile.ReadError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
                if not self.result.members:
                    raise
                self.result.refuse("(rest of the archive)", f"corrupt: {exc}"[:200])

    def tar_member(self, tf: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        tf.members.clear()  # type: ignore[attr-defined]  # streaming: keep no history
        self.count_entry()
        if info.isdir():
            return
        try:
            if not info.isreg():
                raise MemberRefused(tar_special_reason(info))
            name = self.checked_name(info.name)
            source = tf.extractfile(info)
            if source is None:
                raise MemberRefused("unreadable member")
            self.write_member(name, source, None)  # tar members are stored, not packed
        except MemberRefused as refusal:
            self.result.refuse(info.name, str(refusal))


def _tar_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (info := tf.next()) is not None:
        yield info


class _Counted:
    """Counts the decompressed stream; enforces the size limit and the whole-stream ratio."""

    def __init__(self, stream: _Readable, run: _Run, raw: IO[bytes] | None) -> None:
        self.stream, self.run, self.raw = stream, run, raw
        self.total = 0
        self.cap = run.byte_budget + _STREAM_SLACK

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(_BLOCK if n is None or n < 0 else n)
        self.total += len(data)
        if self.total > self.cap:
            raise self.run.size_error()
        limits = self.run.limits
        if (
            self.raw is not None
            and self.total > limits.ratio_floor_bytes
            and self.total > limits.max_ratio * max(self.raw.tell(), 1)
        ):
            raise self.run.ratio_error(None)
        return data


class _Prefixed:
    """A stream with bytes already read put back in front (tar sniffing peeks 512 bytes)."""

    def __init__(self, head: bytes, rest: _Counted) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0 or n >= len(self.head):
                data, self.head = self.head, b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self.rest.read(n)


def _decompressor(kind: str, raw: IO[bytes]) -> _Readable:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    return lzma.LZMAFile(raw, mode="rb")


def _is_tar_header(block: bytes) -> bool:
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _is_archive(path: Path, name: str) -> bool:
    try:
        return sniff_file(path, name) in ARCHIVE_KINDS
    except FileProcessingError:
        return False  # the member's own job reports what is wrong with it
