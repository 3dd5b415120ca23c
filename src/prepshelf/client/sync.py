"""What a re-run of `prepshelf ingest` may skip: files already in the store unchanged.

Each file the command attaches carries two attributes, `source` (its display name) and
`sha256` (of its bytes). A re-run lists the store's files once and skips every file whose
source is there with the same digest and has not failed, so an unchanged folder uploads
nothing and computes nothing. A file whose same bytes failed (or were cancelled) before is
run again under its existing file id, attached to the new batch without a second upload (the
failure may have been transient, or the server has learnt to read it since). A changed file
is uploaded and attached again, and once the new version has completed the older versions of
that source leave the store (LangChain's "incremental" cleanup: files absent from the folder
are left alone).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from prepshelf.client.http import check, iter_pages

SOURCE, SHA256 = "source", "sha256"
_MAX_ATTRIBUTE_CHARS = 512  # OpenAI's limit on a string attribute value
_SKIPPABLE = ("completed", "in_progress")
_RUN_AGAIN = ("failed", "cancelled")


@dataclass(frozen=True)
class StoredVersion:
    file_id: str
    sha256: str
    status: str


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def attributes(name: str, sha256: str) -> dict[str, str] | None:
    """The attributes that let a later run recognise this file (None: name too long)."""
    if len(name) > _MAX_ATTRIBUTE_CHARS:
        return None
    return {SOURCE: name, SHA256: sha256}


async def stored_versions(
    client: httpx.AsyncClient, store_id: str
) -> dict[str, list[StoredVersion]]:
    """Every version of every source this command put in the store, by source."""
    found: dict[str, list[StoredVersion]] = {}
    async for item in iter_pages(client, f"/v1/vector_stores/{store_id}/files"):
        attrs = item.get("attributes") or {}
        source, digest = attrs.get(SOURCE), attrs.get(SHA256)
        if isinstance(source, str) and isinstance(digest, str):
            found.setdefault(source, []).append(
                StoredVersion(file_id=item["id"], sha256=digest, status=item["status"])
            )
    return found


def unchanged(versions: list[StoredVersion], sha256: str) -> StoredVersion | None:
    """The stored version a re-run can keep instead of uploading the file again."""
    return next((v for v in versions if v.sha256 == sha256 and v.status in _SKIPPABLE), None)


def failed_before(versions: list[StoredVersion], sha256: str) -> StoredVersion | None:
    """The stored version with these bytes that failed (or was cancelled) on an earlier run:
    a re-run attaches it again (the server runs it again) instead of uploading a copy."""
    return next((v for v in versions if v.sha256 == sha256 and v.status in _RUN_AGAIN), None)


async def drop_older_versions(
    client: httpx.AsyncClient, store_id: str, versions: list[StoredVersion], keep: str
) -> int:
    """Detach the other versions of a source once `keep` has completed; returns how many."""
    dropped = 0
    for version in versions:
        if version.file_id == keep:
            continue
        response = await client.delete(f"/v1/vector_stores/{store_id}/files/{version.file_id}")
        if response.status_code != 404:  # already gone is fine
            check(response)
        dropped += 1
    return dropped


def batch_body(files: list[tuple[str, dict[str, str] | None]]) -> dict[str, Any]:
    return {
        "files": [
            {"file_id": file_id, **({"attributes": attrs} if attrs else {})}
            for file_id, attrs in files
        ]
    }
