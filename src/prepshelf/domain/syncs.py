"""A source sync's report: what one run added, replaced, removed, left alone and failed.

Counts are exact; the lists name at most `LISTED` files each, so a first sync of a large
folder keeps a small job row. The report is the sync job's `result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

LISTED = 1000
# Attributes a sync writes on each file it attaches: where the file came from, its path there,
# the sha256 of its bytes, and a cheap change stamp (size and mtime, or the S3 ETag) that
# lets the next run skip an unchanged file without reading it.
SYNC_SOURCE, SOURCE, SHA256, SOURCE_VERSION = "sync_source", "source", "sha256", "source_version"


@dataclass(frozen=True)
class SyncEntry:
    path: str
    file_id: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "file_id": self.file_id}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class SyncReport:
    source: str
    files_listed: int = 0
    added: tuple[SyncEntry, ...] = ()
    replaced: tuple[SyncEntry, ...] = ()
    removed: tuple[SyncEntry, ...] = ()
    failed: tuple[SyncEntry, ...] = ()
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("added", "replaced", "removed", "unchanged", "failed"), 0
        )
    )
    older_versions_detached: int = 0
    bytes_read: int = 0
    bytes_copied: int = 0
    file_batch_id: str | None = None

    def with_failures(self, more: list[SyncEntry]) -> SyncReport:
        counts = {**self.counts, "failed": self.counts["failed"] + len(more)}
        listed = (*self.failed, *more)[:LISTED]
        return replace(self, failed=listed, counts=counts)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "sync.report",
            "source": self.source,
            "files_listed": self.files_listed,
            "counts": dict(self.counts),
            "added": [e.to_json() for e in self.added],
            "replaced": [e.to_json() for e in self.replaced],
            "removed": [e.to_json() for e in self.removed],
            "failed": [e.to_json() for e in self.failed],
            "older_versions_detached": self.older_versions_detached,
            "bytes_read": self.bytes_read,
            "bytes_copied": self.bytes_copied,
            "file_batch_id": self.file_batch_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncReport:
        def entries(key: str) -> tuple[SyncEntry, ...]:
            return tuple(
                SyncEntry(e["path"], e.get("file_id"), e.get("reason")) for e in data.get(key, [])
            )

        return cls(
            source=data["source"],
            files_listed=int(data.get("files_listed", 0)),
            added=entries("added"),
            replaced=entries("replaced"),
            removed=entries("removed"),
            failed=entries("failed"),
            counts={k: int(v) for k, v in data["counts"].items()},
            older_versions_detached=int(data.get("older_versions_detached", 0)),
            bytes_read=int(data.get("bytes_read", 0)),
            bytes_copied=int(data.get("bytes_copied", 0)),
            file_batch_id=data.get("file_batch_id"),
        )
