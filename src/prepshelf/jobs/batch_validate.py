"""Validating a batch's input: check every line, cut the slices, or fail the batch with
line numbers.

One transaction: a worker lost mid-validation leaves nothing behind, and the next attempt
starts over. custom_id uniqueness is checked in a temporary table, not in worker memory.
"""

from __future__ import annotations

import asyncio

from prepshelf.domain.batches import Batch, BatchJob
from prepshelf.jobs import batch_state
from prepshelf.jobs.batch_checks import ValidationReport, mark_duplicates
from prepshelf.jobs.batch_input import input_path
from prepshelf.jobs.batch_lines import LineScanner
from prepshelf.jobs.batch_slicing import SliceCutter
from prepshelf.jobs.resources import WorkerResources
from prepshelf.store import batch_slices as slices_db
from prepshelf.store import job_progress

_SCAN_CHUNK = 2000  # lines parsed per thread hop


async def validate(res: WorkerResources, job: BatchJob, batch: Batch) -> bool:
    """True when the batch moved on to embedding; False when it failed (malformed input)."""
    path = await input_path(res, batch)
    cutter = SliceCutter(res.settings.batch_slice_lines, res.settings.batch_slice_inputs)
    report = ValidationReport()
    async with res.pool.connection() as conn:
        await job_progress.set_stage(conn, job_id=job.id, stage="parsing")
        async with conn.transaction():
            await slices_db.clear_slices(conn, batch_id=batch.id)
            await slices_db.start_custom_id_check(conn)
            with open(path, "rb") as fh:
                scanner = LineScanner(
                    fh,
                    line_no=0,
                    max_bytes=res.settings.max_json_body_bytes,
                    endpoint=batch.endpoint,
                )
                while lines := await asyncio.to_thread(scanner.next, _SCAN_CHUNK):
                    report.total += len(lines)
                    ids = [ln.custom_id for ln in lines if ln.custom_id is not None]
                    first_seen = await slices_db.first_seen_custom_ids(conn, custom_ids=ids)
                    mark_duplicates(lines, first_seen)
                    for ln in lines:
                        if report.record(ln):
                            cutter.add(ln)
            cutter.close()
            if report.finish():
                await batch_state.fail_invalid(conn, batch_id=batch.id, job=job, report=report)
                return False
            await batch_state.start_embedding(
                conn, batch_id=batch.id, job=job, slices=cutter.slices, total=report.total
            )
    return True
