"""The /v1/batches embedding job: validate the JSONL input, embed it slice by slice, finalize.

Checkpoints: validation cuts the input into slices (file offset + line count) in one
transaction; each slice's output is written to its own part blob (replaced whole if the slice
runs again) and marked done together with the batch counts and the job's progress. A worker
that dies mid-slice costs that slice only, and no `custom_id` is ever written twice. Finalize
concatenates the part blobs into the output and error files. Memory is bounded by one slice:
the input is read and the output written as streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import procrastinate
import psycopg
from psycopg import AsyncConnection

from prepshelf.errors import PrepshelfError
from prepshelf.ids import new_file_id
from prepshelf.jobs.ingest import WorkerResources
from prepshelf.jobs.queue import BATCH_QUEUE, BATCH_TASK
from prepshelf.jobs.retry import RequeueJob, RequeueStrategy, backoff_delay
from prepshelf.pipeline.embedding_plan import iter_input_vectors
from prepshelf.pipeline.embedding_request import (
    EmbeddingLimits,
    EmbeddingRequest,
    count_inputs,
    parse_request,
    response_body,
)
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.store import batches as batches_db
from prepshelf.store import files as files_db
from prepshelf.store import jobs as jobs_db
from prepshelf.store.blobs import BlobStore

log = logging.getLogger(__name__)

ENDPOINT = "/v1/embeddings"
_MAX_REPORTED_ERRORS = 100
_SCAN_CHUNK = 2000  # lines parsed per thread hop during validation
_COPY_BYTES = 1024 * 1024


async def defer_batch_job(app: procrastinate.App, conn: AsyncConnection[Any], job_id: str) -> int:
    """Queue the batch's job on `conn` (the caller's transaction); return the queue job id."""
    deferrer = app.configure_task(BATCH_TASK, queue=BATCH_QUEUE, connection=conn)
    return await deferrer.defer_async(job_id=job_id)


def part_key(batch_id: str, slice_no: int, kind: str) -> str:
    return f"batches/{batch_id}/part-{slice_no:07d}.{kind}.jsonl"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# --- reading the input ------------------------------------------------------------------


@dataclass
class _Line:
    line_no: int  # 1-based, physical
    offset: int
    custom_id: str | None = None
    body: Any = None
    error: dict[str, Any] | None = None


def _read_line(fh: IO[bytes], max_bytes: int) -> tuple[bytes, bool]:
    """One line (without its newline) and whether it fitted in `max_bytes`; b'' + True at EOF."""
    data = fh.readline(max_bytes + 1)
    if len(data) <= max_bytes or data.endswith(b"\n"):
        return data, True
    while data and not data.endswith(b"\n"):  # skip the rest of an overlong line
        data = fh.readline(_COPY_BYTES)
    return b"x", False


def _parse(raw: bytes, line_no: int, offset: int, fits: bool, max_bytes: int) -> _Line:
    line = _Line(line_no, offset)

    def err(code: str, message: str, param: str | None = None) -> _Line:
        line.error = {"code": code, "message": message, "param": param, "line": line_no}
        return line

    if not fits:
        return err("invalid_json_line", f"Line {line_no} is longer than {max_bytes} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return err("invalid_json_line", f"Line {line_no} is not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return err("invalid_json_line", f"Line {line_no} is not a JSON object")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return err(
            "missing_required_parameter",
            f"Line {line_no}: 'custom_id' must be a non-empty string",
            "custom_id",
        )
    line.custom_id = custom_id
    if obj.get("method") != "POST":
        return err("invalid_method", f"Line {line_no}: 'method' must be 'POST'", "method")
    if obj.get("url") != ENDPOINT:
        return err(
            "invalid_url",
            f"Line {line_no}: 'url' must be {ENDPOINT!r}, the batch's endpoint",
            "url",
        )
    if not isinstance(obj.get("body"), dict):
        return err("invalid_body", f"Line {line_no}: 'body' must be a JSON object", "body")
    line.body = obj["body"]
    return line


class _Scanner:
    """Reads request lines from a position; blank lines are skipped (they are not requests)."""

    def __init__(self, fh: IO[bytes], *, line_no: int, max_bytes: int) -> None:
        self.fh, self.line_no, self.max_bytes = fh, line_no, max_bytes

    def next(self, n: int) -> list[_Line]:
        out: list[_Line] = []
        while len(out) < n:
            offset = self.fh.tell()
            raw, fits = _read_line(self.fh, self.max_bytes)
            if not raw:
                break
            self.line_no += 1
            if fits and not raw.strip():
                continue
            out.append(_parse(raw, self.line_no, offset, fits, self.max_bytes))
        return out


# --- the task -----------------------------------------------------------------------------


class _Stop(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


async def run_batch(res: WorkerResources, job_id: str) -> None:
    async with res.pool.connection() as conn:
        batch = await batches_db.get_batch_of_job(conn, job_id=job_id)
        job = await jobs_db.claim_job(conn, job_id=job_id, worker=res.worker_name)
    if batch is None:
        async with res.pool.connection() as conn:
            await jobs_db.finish_cancelled(conn, job_id=job_id)
        return
    if job is None:  # final already, or cancel requested before this attempt started
        current = await _get_job(res, job_id)
        if current["status"] in ("queued", "running") or batch["status"] == "cancelling":
            await _finalize(res, batch, current, "cancelled")
        return
    try:
        await _run(res, job, batch)
    except asyncio.CancelledError:
        async with res.pool.connection() as conn:
            await jobs_db.release_job(conn, job=job, reason="released: worker shutting down")
        raise RequeueJob("worker shutting down") from None
    except Exception as exc:
        await _handle_failure(res, job, batch, exc)


async def _get_job(res: WorkerResources, job_id: str) -> dict[str, Any]:
    async with res.pool.connection() as conn:
        job = await jobs_db.get_job(conn, job_id=job_id)
    assert job is not None
    return job


async def _handle_failure(
    res: WorkerResources, job: dict[str, Any], batch: dict[str, Any], exc: Exception
) -> None:
    transient = isinstance(exc, psycopg.OperationalError)
    message = f"{type(exc).__name__}: {exc}"
    if transient and job["attempts"] < res.settings.max_attempts:
        delay = backoff_delay(
            job["attempts"],
            base_s=res.settings.retry_base_delay_s,
            max_s=res.settings.retry_max_delay_s,
        )
        log.warning("batch %s: transient fault, retrying in %.1f s: %s", batch["id"], delay, exc)
        async with res.pool.connection() as conn:
            await jobs_db.release_job(
                conn,
                job=job,
                reason="retry scheduled",
                error={"code": "server_error", "message": message},
            )
        raise RequeueJob(message, delay) from exc
    log.exception("batch %s failed", batch["id"])
    error = {"code": "server_error", "message": f"batch {batch['id']}: {message}"}
    async with res.pool.connection() as conn, conn.transaction():
        await batches_db.set_status(
            conn,
            batch_id=batch["id"],
            status="failed",
            only_from=("validating", "in_progress", "finalizing", "cancelling"),
            errors=[{**error, "param": None, "line": None}],
        )
        await jobs_db.finish_failed(conn, job=job, error=error)


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


async def _input_path(res: WorkerResources, batch: dict[str, Any]) -> Any:
    async with res.pool.connection() as conn:
        row = await files_db.get_file(
            conn, project_id=batch["project_id"], file_id=batch["input_file_id"]
        )
    if row is None:
        raise PrepshelfError(f"the input file {batch['input_file_id']} was deleted")
    try:
        return res.blobs.path(row["blob_key"])  # local storage: the blob itself
    except NotImplementedError:
        return await asyncio.to_thread(_download_input, res, batch["id"], row["blob_key"])


def _cached_input(res: WorkerResources, batch_id: str) -> Path:
    return res.settings.data_dir / "tmp" / "batches" / f"{batch_id}.input.jsonl"


def _download_input(res: WorkerResources, batch_id: str, key: str) -> Path:
    """Object storage: one streamed download per worker and batch, reused by every slice
    (slices seek to their byte offsets, which a stream cannot do)."""
    target = _cached_input(res, batch_id)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f"{target.name}.{os.getpid()}.part")
        with res.blobs.open_reader(key) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_BYTES)
        os.replace(part, target)
    return target


async def _run(res: WorkerResources, job: dict[str, Any], batch: dict[str, Any]) -> None:
    if batch["status"] == "validating":
        if not await _validate(res, job, batch):
            return
    elif batch["status"] in ("in_progress", "cancelling"):
        async with res.pool.connection() as conn:
            await jobs_db.set_stage(conn, job_id=job["id"], stage="embedding")
    try:
        if batch["status"] != "finalizing":
            await _embed_slices(res, job, batch)
        final = "completed"
    except _Stop as stop:
        final = stop.status
    await _finalize(res, batch, job, final)


async def _check_stop(conn: AsyncConnection[Any], batch_id: str, job_id: str) -> None:
    row = await (
        await conn.execute(
            """SELECT b.status, b.expires_at < clock_timestamp() AS expired,
                      j.cancel_requested
               FROM batches b JOIN jobs j ON j.id = b.job_id WHERE b.id = %s AND j.id = %s""",
            [batch_id, job_id],
        )
    ).fetchone()
    if row is None or row["status"] == "cancelling" or row["cancel_requested"]:
        raise _Stop("cancelled")
    if row["expired"]:
        raise _Stop("expired")


# --- validation -------------------------------------------------------------------------


@dataclass
class _SliceCutter:
    max_lines: int
    max_inputs: int
    slices: list[tuple[int, int, int, int]] = field(default_factory=list)
    _start: tuple[int, int] | None = None
    _lines: int = 0
    _inputs: int = 0

    def add(self, line: _Line) -> None:
        if self._start is None:
            self._start = (line.line_no, line.offset)
        self._lines += 1
        self._inputs += max(1, count_inputs(line.body.get("input")))
        if self._lines >= self.max_lines or self._inputs >= self.max_inputs:
            self.close()

    def close(self) -> None:
        if self._start is not None:
            no = len(self.slices)
            self.slices.append((no, self._start[0], self._start[1], self._lines))
        self._start, self._lines, self._inputs = None, 0, 0


async def _validate(res: WorkerResources, job: dict[str, Any], batch: dict[str, Any]) -> bool:
    """Check every line, cut the slices; fail the batch (with line numbers) on malformed input.

    One transaction: a worker lost mid-validation leaves nothing behind, and the next attempt
    starts over. custom_id uniqueness is checked in a temporary table, not in worker memory.
    """
    batch_id = batch["id"]
    path = await _input_path(res, batch)
    cutter = _SliceCutter(res.settings.batch_slice_lines, res.settings.batch_slice_inputs)
    errors: list[dict[str, Any]] = []
    n_errors = total = 0
    async with res.pool.connection() as conn:
        await jobs_db.set_stage(conn, job_id=job["id"], stage="parsing")
        async with conn.transaction():
            await batches_db.clear_slices(conn, batch_id=batch_id)
            await conn.execute(
                "CREATE TEMP TABLE batch_custom_ids (custom_id text PRIMARY KEY) ON COMMIT DROP"
            )
            with open(path, "rb") as fh:
                scanner = _Scanner(fh, line_no=0, max_bytes=res.settings.max_json_body_bytes)
                while lines := await asyncio.to_thread(scanner.next, _SCAN_CHUNK):
                    total += len(lines)
                    ids = [ln.custom_id for ln in lines if ln.custom_id is not None]
                    cur = await conn.execute(
                        """INSERT INTO batch_custom_ids SELECT unnest(%s::text[])
                           ON CONFLICT DO NOTHING RETURNING custom_id""",
                        [ids],
                    )
                    fresh = Counter(r["custom_id"] for r in await cur.fetchall())
                    for ln in lines:
                        if ln.error is None and ln.custom_id is not None:
                            if fresh[ln.custom_id]:
                                fresh[ln.custom_id] -= 1
                            else:
                                ln.error = {
                                    "code": "duplicate_custom_id",
                                    "message": f"Line {ln.line_no}: custom_id "
                                    f"{ln.custom_id!r} is used by an earlier line",
                                    "param": "custom_id",
                                    "line": ln.line_no,
                                }
                        elif fresh[ln.custom_id or ""]:
                            fresh[ln.custom_id or ""] -= 1
                        if ln.error is not None:
                            n_errors += 1
                            if len(errors) < _MAX_REPORTED_ERRORS:
                                errors.append(ln.error)
                        elif not n_errors:
                            cutter.add(ln)
            cutter.close()
            if total == 0:
                n_errors = 1
                errors.append(
                    {
                        "code": "empty_file",
                        "message": "The input file contains no requests",
                        "param": None,
                        "line": None,
                    }
                )
            if n_errors:
                if n_errors > len(errors):
                    errors.append(
                        {
                            "code": "too_many_errors",
                            "message": f"{n_errors} lines are malformed; the first "
                            f"{_MAX_REPORTED_ERRORS} are listed",
                            "param": None,
                            "line": None,
                        }
                    )
                await batches_db.set_status(
                    conn,
                    batch_id=batch_id,
                    status="failed",
                    only_from=("validating", "cancelling"),
                    errors=errors,
                    total=0,
                )
                await jobs_db.finish_failed(
                    conn,
                    job=job,
                    error={
                        "code": "invalid_batch_file",
                        "message": f"batch {batch_id}: the input file has {n_errors} "
                        "malformed line(s); see the batch's errors",
                        "stage": "parsing",
                    },
                )
                return False
            await batches_db.insert_slices(conn, batch_id=batch_id, slices=cutter.slices)
            await batches_db.set_status(
                conn,
                batch_id=batch_id,
                status="in_progress",
                only_from=("validating",),
                total=total,
            )
            await conn.execute("UPDATE batches SET total = %s WHERE id = %s", [total, batch_id])
            await jobs_db.set_stage(
                conn,
                job_id=job["id"],
                stage="embedding",
                progress_total=total,
                progress_unit="lines",
            )
    return True


# --- embedding slices -------------------------------------------------------------------


@dataclass
class _SliceResult:
    completed: int
    failed: int
    tokens: int
    inputs: int


def _request_id() -> str:
    return f"req_{secrets.token_hex(16)}"


def _line_id() -> str:
    return f"batch_req_{secrets.token_hex(12)}"


def _run_slice(
    res: WorkerResources, batch_id: str, path: Any, sl: dict[str, Any], limits: EmbeddingLimits
) -> _SliceResult:
    """Read, embed and write one slice (in a thread): the part blobs are replaced whole."""
    tokenizer = load_tokenizer(res.model_dir)
    with open(path, "rb") as fh:
        fh.seek(sl["start_offset"])
        scanner = _Scanner(
            fh, line_no=sl["start_line"] - 1, max_bytes=res.settings.max_json_body_bytes
        )
        lines = scanner.next(sl["n_lines"])
    ok: list[tuple[_Line, EmbeddingRequest]] = []
    bad: list[tuple[_Line, PrepshelfError]] = []
    for ln in lines:
        try:
            ok.append((ln, parse_request(ln.body, limits=limits, tokenizer=tokenizer)))
        except PrepshelfError as exc:
            bad.append((ln, exc))
    out = res.blobs.open_writer(part_key(batch_id, sl["slice_no"], "out"))
    err = res.blobs.open_writer(part_key(batch_id, sl["slice_no"], "err"))
    try:
        for ln, req, vectors in _embedded_lines(res, ok):
            body = response_body(req, vectors)
            out.write(
                _dumps(
                    {
                        "id": _line_id(),
                        "custom_id": ln.custom_id,
                        "response": {
                            "status_code": 200,
                            "request_id": _request_id(),
                            "body": body,
                        },
                        "error": None,
                    }
                )
            )
        for ln, problem in bad:
            err.write(
                _dumps(
                    {
                        "id": _line_id(),
                        "custom_id": ln.custom_id,
                        "response": {
                            "status_code": problem.status_code,
                            "request_id": _request_id(),
                            "body": {
                                "error": {
                                    "message": problem.message,
                                    "type": problem.error_type,
                                    "param": problem.param,
                                    "code": problem.code,
                                }
                            },
                        },
                        "error": None,
                    }
                )
            )
        out.commit()
        err.commit()
    except BaseException:
        out.abort()
        err.abort()
        raise
    return _SliceResult(
        completed=len(ok),
        failed=len(bad),
        tokens=sum(req.prompt_tokens for _, req in ok),
        inputs=sum(len(req.texts) for _, req in ok),
    )


def _embedded_lines(
    res: WorkerResources, ok: list[tuple[_Line, EmbeddingRequest]]
) -> Iterator[tuple[_Line, EmbeddingRequest, list[np.ndarray]]]:
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


async def _embed_slices(res: WorkerResources, job: dict[str, Any], batch: dict[str, Any]) -> None:
    batch_id = batch["id"]
    path = await _input_path(res, batch)
    limits = _limits(res)
    async with res.pool.connection() as conn:
        model_ids = sorted(limits.model_ids)
        await conn.execute(
            "UPDATE batches SET model = coalesce(model, %s) WHERE id = %s",
            [model_ids[0], batch_id],
        )
    while True:
        async with res.pool.connection() as conn:
            await _check_stop(conn, batch_id, job["id"])
            sl = await batches_db.next_slice(conn, batch_id=batch_id)
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


async def _slice_step(
    res: WorkerResources,
    job: dict[str, Any],
    batch_id: str,
    path: Any,
    sl: dict[str, Any],
    limits: EmbeddingLimits,
) -> None:
    result = await asyncio.to_thread(_run_slice, res, batch_id, path, sl, limits)
    async with res.pool.connection() as conn, conn.transaction():
        done = await batches_db.finish_slice(
            conn,
            batch_id=batch_id,
            slice_no=sl["slice_no"],
            completed=result.completed,
            failed=result.failed,
            tokens=result.tokens,
        )
        await jobs_db.record_batch(
            conn, job_id=job["id"], done=done, computed=result.inputs, cached=0
        )


# --- finalize ---------------------------------------------------------------------------


_STOP_ERRORS = {
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request executed."),
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window ended.",
    ),
}


def _concat(
    blobs: BlobStore,
    batch_id: str,
    slices: list[dict[str, Any]],
    path: Any,
    final: str,
    max_bytes: int,
) -> dict[str, tuple[int, str] | None]:
    """Write output.jsonl and errors.jsonl from the part blobs (streamed); size and sha each.

    Requests of slices never run (cancelled or expired batch) get an error line each.
    """
    result: dict[str, tuple[int, str] | None] = {}
    for kind, name in (("out", "output"), ("err", "errors")):
        writer = blobs.open_writer(f"batches/{batch_id}/{name}.jsonl")
        try:
            for sl in slices:
                if sl["done"]:
                    with blobs.open_reader(part_key(batch_id, sl["slice_no"], kind)) as fh:
                        while data := fh.read(_COPY_BYTES):
                            writer.write(data)
                elif kind == "err" and final in _STOP_ERRORS:
                    code, message = _STOP_ERRORS[final]
                    with open(path, "rb") as fh:
                        fh.seek(sl["start_offset"])
                        scanner = _Scanner(fh, line_no=sl["start_line"] - 1, max_bytes=max_bytes)
                        for ln in scanner.next(sl["n_lines"]):
                            writer.write(
                                _dumps(
                                    {
                                        "id": _line_id(),
                                        "custom_id": ln.custom_id,
                                        "response": None,
                                        "error": {"code": code, "message": message},
                                    }
                                )
                            )
            size = writer.bytes_written
            digest = writer.commit()
        except BaseException:
            writer.abort()
            raise
        result[name] = (size, digest) if size else None
    return result


async def _finalize(
    res: WorkerResources, batch: dict[str, Any], job: dict[str, Any], final: str
) -> None:
    """Write the output files and end the batch and its job (idempotent: keys are fixed)."""
    batch_id = batch["id"]
    async with res.pool.connection() as conn:
        if final == "completed":
            await batches_db.set_status(
                conn, batch_id=batch_id, status="finalizing", only_from=("in_progress",)
            )
        await jobs_db.set_stage(conn, job_id=job["id"], stage="indexing")
        slices = await batches_db.slices(conn, batch_id=batch_id)
    path = await _input_path(res, batch) if final in _STOP_ERRORS else None
    written = await asyncio.to_thread(
        _concat, res.blobs, batch_id, slices, path, final, res.settings.max_json_body_bytes
    )
    _cached_input(res, batch_id).unlink(missing_ok=True)
    file_ids: dict[str, str | None] = {}
    async with res.pool.connection() as conn, conn.transaction():
        for name, info in written.items():
            if info is None:
                file_ids[name] = None
                continue
            new_id = file_ids[name] = new_file_id()
            await files_db.insert_file(
                conn,
                file_id=new_id,
                project_id=batch["project_id"],
                filename=f"{batch_id}_{'output' if name == 'output' else 'error'}.jsonl",
                purpose="batch_output",
                size=info[0],
                sha256=info[1],
                blob_key=f"batches/{batch_id}/{name}.jsonl",
            )
        await batches_db.set_status(
            conn,
            batch_id=batch_id,
            status=final,
            only_from=("validating", "in_progress", "finalizing", "cancelling"),
            output_file_id=file_ids["output"],
            error_file_id=file_ids["errors"],
        )
        if final == "completed":
            await jobs_db.finish_succeeded(conn, job=job, usage_bytes=0)
        elif final == "cancelled":
            await jobs_db.finish_cancelled(conn, job_id=job["id"])
        else:
            code, message = _STOP_ERRORS[final]
            await jobs_db.finish_failed(
                conn, job=job, error={"code": code, "message": f"batch {batch_id}: {message}"}
            )
    for sl in slices:
        for kind in ("out", "err"):
            res.blobs.delete(part_key(batch_id, sl["slice_no"], kind))


def register(app: procrastinate.App, res: WorkerResources) -> None:
    @app.task(name=BATCH_TASK, queue=BATCH_QUEUE, retry=RequeueStrategy())
    async def embed_batch(job_id: str) -> None:
        await run_batch(res, job_id)
