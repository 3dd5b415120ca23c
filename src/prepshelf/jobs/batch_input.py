"""Where a batch's input file is read from: the blob itself on local storage, else one
streamed download per worker and batch, reused by every slice (slices seek to their byte
offsets, which a stream cannot do)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from prepshelf.domain.batches import Batch
from prepshelf.errors import PrepshelfError
from prepshelf.jobs.batch_lines import COPY_BYTES
from prepshelf.jobs.resources import WorkerResources
from prepshelf.store import batches as batches_db


async def input_path(res: WorkerResources, batch: Batch) -> Path:
    async with res.pool.connection() as conn:
        key = await batches_db.input_blob_key(conn, batch=batch)
    if key is None:
        raise PrepshelfError(f"the input file {batch.input_file_id} was deleted")
    try:
        return res.blobs.path(key)  # local storage: the blob itself
    except NotImplementedError:
        return await asyncio.to_thread(_download_input, res, batch.id, key)


def drop_cached_input(res: WorkerResources, batch_id: str) -> None:
    _cached_input(res, batch_id).unlink(missing_ok=True)


def _cached_input(res: WorkerResources, batch_id: str) -> Path:
    return res.settings.data_dir / "tmp" / "batches" / f"{batch_id}.input.jsonl"


def _download_input(res: WorkerResources, batch_id: str, key: str) -> Path:
    target = _cached_input(res, batch_id)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f"{target.name}.{os.getpid()}.part")
        with res.blobs.open_reader(key) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_BYTES)
        os.replace(part, target)
    return target
