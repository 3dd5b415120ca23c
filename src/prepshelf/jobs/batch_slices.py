"""Embedding a batch slice by slice: each slice is read, embedded and written to its part
blobs in a thread, then marked done with the batch counts and the job's progress in one
transaction. A worker that dies mid-slice costs that slice only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prepshelf.domain.batches import Batch, BatchJob, BatchSlice
from prepshelf.errors import PrepshelfError
from prepshelf.jobs.batch_input import input_path
from prepshelf.jobs.batch_lines import RequestLine, read_slice
from prepshelf.jobs.batch_output import write_parts
from prepshelf.jobs.batch_state import check_stop
from prepshelf.jobs.batch_turns import yield_if_others_wait
from prepshelf.jobs.resources import WorkerResources
from prepshelf.pipeline.embedding_plan import iter_input_vectors
from prepshelf.pipeline.embedding_request import EmbeddingLimits, EmbeddingRequest, parse_request
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.store import batch_slices as slices_db
from prepshelf.store import batches as batches_db
from prepshelf.store import job_progress


@dataclass(frozen=True)
class _SliceResult:
    completed: int
    failed: int
    tokens: int
    inputs: int


def _limits(res: WorkerResources) -> EmbeddingLimits:
    emb = res.embedder
    names = {emb.model_id}
    # The worker's embedder is wrapped (metrics): ask the settings, not isinstance.
    if res.settings.embedder == "local":
        names.add(res.settings.model_id)
    return EmbeddingLimits(
        model_ids=frozenset(names),
        dimensions=emb.dimensions,
        max_input_tokens=emb.max_input_tokens,
        max_inputs=res.settings.batch_slice_inputs,
        max_total_tokens=res.settings.embeddings_max_tokens,  # per line, as OpenAI's
        token_ids=res.settings.embeddings_token_ids,
        long_input=res.settings.embeddings_long_input,
    )


async def embed_slices(res: WorkerResources, job: BatchJob, batch: Batch) -> None:
    """Run every slice not done yet, in order; raises batch_state.Stop between slices."""
    batch_id = batch.id
    path = await input_path(res, batch)
    limits = _limits(res)
    async with res.pool.connection() as conn:
        await batches_db.set_model_if_unset(
            conn, batch_id=batch_id, model=sorted(limits.model_ids)[0]
        )
    started = time.monotonic()
    while True:
        async with res.pool.connection() as conn:
            await check_stop(conn, batch_id=batch_id, job_id=job.id)
            sl = await slices_db.next_slice(conn, batch_id=batch_id)
        if sl is None:
            return
        # Finish the slice in flight even when the worker is told to stop: its lines are then
        # not computed twice, and the job resumes at the next slice elsewhere.
        step = asyncio.ensure_future(_slice_step(res, job, batch_id, path, sl, limits))
        try:
            await asyncio.shield(step)
        except asyncio.CancelledError:
            await step
            raise
        await yield_if_others_wait(res, job, since=started)


async def _slice_step(
    res: WorkerResources,
    job: BatchJob,
    batch_id: str,
    path: Path,
    sl: BatchSlice,
    limits: EmbeddingLimits,
) -> None:
    result = await asyncio.to_thread(_run_slice, res, batch_id, path, sl, limits)
    async with res.pool.connection() as conn, conn.transaction():
        done = await slices_db.finish_slice(
            conn,
            batch_id=batch_id,
            slice_no=sl.slice_no,
            completed=result.completed,
            failed=result.failed,
            tokens=result.tokens,
        )
        await job_progress.record_checkpoint(
            conn, job_id=job.id, done=done, computed=result.inputs, cached=0
        )


def _run_slice(
    res: WorkerResources, batch_id: str, path: Path, sl: BatchSlice, limits: EmbeddingLimits
) -> _SliceResult:
    """Read, embed and write one slice (in a thread): the part blobs are replaced whole."""
    tokenizer = load_tokenizer(res.model_dir)
    lines = read_slice(path, sl, max_bytes=res.settings.max_json_body_bytes)
    ok: list[tuple[RequestLine, EmbeddingRequest]] = []
    bad: list[tuple[RequestLine, PrepshelfError]] = []
    for ln in lines:
        try:
            ok.append((ln, parse_request(ln.body, limits=limits, tokenizer=tokenizer)))
        except PrepshelfError as exc:
            bad.append((ln, exc))
    write_parts(res.blobs, batch_id, sl.slice_no, _embedded_lines(res, ok), bad)
    return _SliceResult(
        completed=len(ok),
        failed=len(bad),
        tokens=sum(req.prompt_tokens for _, req in ok),
        inputs=sum(len(req.texts) for _, req in ok),
    )


def _embedded_lines(
    res: WorkerResources, ok: list[tuple[RequestLine, EmbeddingRequest]]
) -> Iterator[tuple[RequestLine, EmbeddingRequest, list[np.ndarray]]]:
    """Each valid line with its vectors, as soon as its last input is embedded (pieces of
    several lines share the model's batches; long inputs are folded as in the route)."""
    vectors: list[np.ndarray] = []
    stream = iter_input_vectors(
        [req for _, req in ok], res.embedder.embed, batch_size=res.settings.embed_batch_size
    )
    for r, i, vector in stream:
        vectors.append(vector)
        if i == len(ok[r][1].inputs) - 1:
            yield ok[r][0], ok[r][1], vectors
            vectors = []
