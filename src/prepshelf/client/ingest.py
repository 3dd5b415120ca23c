"""`prepshelf ingest`: upload files and folders into a vector store as one file batch.

Uploads run concurrently (bounded); the store is created by name when absent; files already
in the store unchanged since an earlier run are skipped, and files whose same bytes failed
before run again under their existing ids (`client/sync.py`; `--force` uploads everything);
with `wait` the batch is followed to its end and a summary says which files completed and
why the others failed. Exit status: 0 all completed (or unchanged), 1 any file
failed (or could not be uploaded), 2 bad arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from prepshelf.client import sync
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
    force: bool = False,
) -> int:
    items = collect(paths)
    states = [FileState(name=name) for _, name in items]
    digests = await asyncio.to_thread(lambda: [sync.file_sha256(p) for p, _ in items])
    async with async_client(config) as client:
        store, created = await ensure_store(client, store_name)
        out.line(f"{'created' if created else 'using'} vector store {store_name!r} ({store['id']})")
        known = {} if created else await sync.stored_versions(client, store["id"])
        todo, again = [], []
        for item, state, digest in zip(items, states, digests, strict=True):
            versions = [] if force else known.get(state.name, [])
            kept = sync.unchanged(versions, digest)
            retry = sync.failed_before(versions, digest)
            if kept is not None:
                state.status, state.file_id = "unchanged", kept.file_id
            elif retry is not None:
                state.file_id, state.reused = retry.file_id, True
                again.append((state, digest))
            else:
                todo.append((item[0], state, digest))
        skipped = len(items) - len(todo) - len(again)
        if skipped:
            out.line(f"{skipped} file(s) unchanged since the last run: skipped")
        if again:
            out.line(
                f"{len(again)} file(s) failed or were cancelled before with the same bytes: "
                "running them again under their file ids, not uploaded again (--force uploads)"
            )
        if not todo and not again:
            return _summary(out, states)
        view = ingest_view(out, len(todo) + len(again))
        with view:
            limit = asyncio.Semaphore(max(1, concurrency))

            async def upload(path: Path, state: FileState) -> None:
                await _upload(client, path, state, limit)
                view.uploaded(state)

            for state, _ in again:
                view.uploaded(state)
            await asyncio.gather(*(upload(path, state) for path, state, _ in todo))
            sent = [*again, *((s, d) for _, s, d in todo if s.file_id)]
            batch_id = None
            if sent:
                body = sync.batch_body(
                    [(s.file_id, sync.attributes(s.name, d)) for s, d in sent if s.file_id]
                )
                batch = check(
                    await client.post(f"/v1/vector_stores/{store['id']}/file_batches", json=body)
                )
                batch_id = batch["id"]
            by_id = {s.file_id: s for s, _ in sent if s.file_id}
            if batch_id is not None and wait:
                view.watching([s for s, _ in sent])
                await follow(client, store["id"], batch_id, by_id, view.changed)
        if batch_id is None:
            return _summary(out, states)
        out.line(f"file batch {batch_id}: {len(sent)} file(s) in {store_name!r}")
        if not wait:
            failed = sum(1 for _, state, _ in todo if not state.file_id)  # uploads that failed
            return 1 if failed else 0
        for row in await final_files(client, store["id"], batch_id):
            found = by_id.get(row["id"])
            if found is not None:
                found.status = VSF_STATUS.get(row["status"], row["status"])
                found.error = (row.get("last_error") or {}).get("message")
        replaced = 0
        for state in by_id.values():
            if state.status == "completed" and state.file_id:
                versions = known.get(state.name, [])
                replaced += await sync.drop_older_versions(
                    client, store["id"], versions, keep=state.file_id
                )
        if replaced:
            out.line(f"{replaced} older version(s) of changed files left the store")
        return _summary(out, states)


def _summary(out: Output, states: list[FileState]) -> int:
    ok = [s for s in states if s.status in ("completed", "unchanged")]
    bad = [s for s in states if s.status not in ("completed", "unchanged")]
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
    same = sum(s.status == "unchanged" for s in ok)
    out.line(
        f"{len(ok) - same} completed, {same} unchanged, {len(bad)} failed of {len(states)} file(s)"
        if same
        else f"{len(ok)} completed, {len(bad)} failed of {len(states)} file(s)"
    )
    return 0 if not bad else 1
