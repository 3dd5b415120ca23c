"""What an uploaded file is, and how it is named in the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class File:
    """An uploaded blob and its row; attached to stores it becomes vector-store files."""

    id: str
    project_id: str
    filename: str
    purpose: str
    bytes: int
    sha256: str  # the content hash idempotency and twin copies rely on
    blob_key: str  # where its bytes lie in blob storage
    created_at: datetime
    expires_at: datetime | None
    parent_file_id: str | None  # the archive it was expanded from
    archive_root_id: str | None
    archive_depth: int


def safe_filename(name: str) -> str:
    """The name we store: base name only, printable characters only, at most 255 characters.

    It is only ever a label (blobs are stored under the file id), but it reaches headers,
    logs and dashboards, so path parts, control and bidi characters are dropped. Uploads
    and synced files are named by it alike.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:255] if cleaned not in ("", ".", "..") else "upload"
