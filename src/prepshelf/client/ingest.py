"""`prepshelf ingest`: upload files and folders into a vector store as one file batch.

Uploads run concurrently (bounded); the store is created by name when absent; with `wait`
the batch is followed to its end and a summary says which files completed and why the
others failed. Exit status: 0 all completed, 1 any file failed (or could not be uploaded),
2 bad arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from prepshelf.client.http import ApiError, ClientConfig, async_client, check, find_store
from prepshelf.client.render import FileState, Output, ingest_view
from prepshelf.client.watch import final_files, follow

VSF_STATUS = {"in_progress": "running", "completed": "completed", "failed": "failed"}


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


def collect(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(path, display name) for each file under the given paths; hidden files are skipped."""
    found: list[tuple[Path, str]] = []
    for root in paths:
        if root.is_file():
            found.append((root, root.name))
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                    found.append((path, f"{root.resolve().name}/{rel.as_posix()}"))
        else:
            raise UsageError(f"no such file or directory: {root}")
    if not found:
        raise UsageError("nothing to ingest: the paths hold no files")
    return found


async def ensure_store(client: httpx.AsyncClient, name: str) -> tuple[dict[str, Any], bool]:
    store = await find_store(client, name)
    if store is not None:
        return store, False
    return check(await client.post("/v1/vector_stores", json={"name": name})), True


async def _upload(
    client: httpx.AsyncClient, path: Path, state: FileState, limit: asyncio.Semaphore
) -> None:
    async with limit:
        try:
            with path.open("rb") as fh:
                body = check(
                    await client.post(
                        "/v1/files",
                        data={"purpose": "assistants"},
                        files={"file": (path.name, fh)},
                        timeout=httpx.Timeout(600.0, connect=10.0),
                    )
                )
            state.file_id = body["id"]
        except (ApiError, httpx.HTTPError, OSError) as exc:
            state.status, state.error = "upload_failed", str(exc)


async def ingest(
    config: ClientConfig,
    paths: Sequence[Path],
    *,
    store_name: str,
    wait: bool,
    concurrency: int,
    out: Output,
) -> int:
    items = collect(paths)
    states = [FileState(name=name) for _, name in items]
    async with async_client(config) as client:
        store, created = await ensure_store(client, store_name)
        out.line(f"{'created' if created else 'using'} vector store {store_name!r} ({store['id']})")
        view = ingest_view(out, len(items))
        with view:
            limit = asyncio.Semaphore(max(1, concurrency))

            async def upload(path: Path, state: FileState) -> None:
                await _upload(client, path, state, limit)
                view.uploaded(state)

            await asyncio.gather(*(upload(p, s) for (p, _), s in zip(items, states, strict=True)))
            sent = [s for s in states if s.file_id]
            if not sent:
                batch_id = None
            else:
                batch = check(
                    await client.post(
                        f"/v1/vector_stores/{store['id']}/file_batches",
                        json={"file_ids": [s.file_id for s in sent]},
                    )
                )
                batch_id = batch["id"]
            if batch_id is not None and wait:
                by_id = {s.file_id: s for s in sent if s.file_id}
                view.watching(sent)
                await follow(client, store["id"], batch_id, by_id, view.changed)
        if batch_id is None:
            return _summary(out, states)
        out.line(f"file batch {batch_id}: {len(sent)} file(s) in {store_name!r}")
        if not wait:
            failed = len(states) - len(sent)
            return 1 if failed else 0
        for row in await final_files(client, store["id"], batch_id):
            state = by_id.get(row["id"])
            if state is not None:
                state.status = VSF_STATUS.get(row["status"], row["status"])
                state.error = (row.get("last_error") or {}).get("message")
        return _summary(out, states)


def _summary(out: Output, states: list[FileState]) -> int:
    ok = [s for s in states if s.status == "completed"]
    bad = [s for s in states if s.status != "completed"]
    if ok:
        out.table(
            ["file", "status", "file_id"],
            [(s.name, s.status, s.file_id) for s in ok],
            title=f"completed: {len(ok)}",
        )
    if bad:
        out.table(
            ["file", "status", "error"],
            [(s.name, s.status, s.error or "") for s in bad],
            title=f"not completed: {len(bad)}",
        )
    out.line(f"{len(ok)} completed, {len(bad)} failed of {len(states)} file(s)")
    return 0 if not bad else 1
