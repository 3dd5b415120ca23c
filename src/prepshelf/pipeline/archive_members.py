"""What an archive member is called and why one is refused (`pipeline/archive.py`).

A member's name is only ever shown, never used as a path: these functions make it safe to
show and store, and refuse names that try to leave the archive.
"""

from __future__ import annotations

import re
import stat
import tarfile
import unicodedata

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


class MemberRefused(Exception):
    """One member is skipped; the archive goes on."""


def safe_member_name(raw: str, *, max_component: int, max_total: int) -> str:
    """The display name of a member; MemberRefused for a name that tries to leave the archive."""
    if "\x00" in raw:
        raise MemberRefused("NUL byte in name")
    name = raw.replace("\\", "/")  # Windows archivers write backslashes
    if name.startswith("/") or _DRIVE.match(name):
        raise MemberRefused("absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MemberRefused("path traversal")
    parts = [_CONTROL.sub("_", unicodedata.normalize("NFC", p)) for p in parts]
    if not parts:
        raise MemberRefused("empty name")
    if any(len(p.encode("utf-8", "surrogatepass")) > max_component for p in parts):
        raise MemberRefused(f"name too long (a path component over {max_component} bytes)")
    clean = "/".join(parts)
    if len(clean.encode("utf-8", "surrogatepass")) > max_total:
        raise MemberRefused(f"name too long (over {max_total} bytes)")
    return clean.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates in the DB


def printable(name: str) -> str:
    name = _CONTROL.sub("?", name).encode("utf-8", "replace").decode("utf-8")
    return name if len(name) <= 200 else name[:197] + "..."


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def special_reason(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "not a regular file"


def tar_special_reason(info: tarfile.TarInfo) -> str:
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device file"
    if info.isfifo():
        return "FIFO"
    return "not a regular file"
