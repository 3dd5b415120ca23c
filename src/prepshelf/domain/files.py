"""How a file is named in the store."""

from __future__ import annotations


def safe_filename(name: str) -> str:
    """The name we store: base name only, printable characters only, at most 255 characters.

    It is only ever a label (blobs are stored under the file id), but it reaches headers,
    logs and dashboards, so path parts, control and bidi characters are dropped. (The same
    rule as api/upload.py's, which uploads apply; the two should become this one.)
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:255] if cleaned not in ("", ".", "..") else "upload"
