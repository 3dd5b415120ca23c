"""Job rows and their state transitions.

Every transition that a client can observe updates the job and its vector-store file in one
transaction, so a job and the file it serves never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.jobs import IngestJob, JobRef, StageTimes, WholeFileCheckpoint
from prepshelf.store import archives as archives_db
from prepshelf.store.job_readouts import (
    FINISHED_TIMES_COLUMNS,
    FinishedTimes,
    finished_times_of,
)
from prepshelf.store.job_stage_sql import ADD_DURATIONS, CLOSE_STAGE, rounded
from prepshelf.store.vector_stores import IngestSource, ingest_source, ingest_source_sql

Row = dict[str, Any]


async def create_embed_batch_job(
    conn: AsyncConnection[Any], *, job_id: str, project_id: str, batch_id: str
) -> None:
    """The job row behind a /v1/batches batch (progress counted in input lines); the batch
    row follows in the same transaction (the key to it is checked at commit)."""
    await conn.execute(
        """INSERT INTO jobs (id, project_id, kind, status, batch_id, progress_unit)
           VALUES (%s, %s, 'embed_batch', 'queued', %s, 'lines')""",
        [job_id, project_id, batch_id],
    )


async def insert_ingest_jobs(
    conn: AsyncConnection[Any],
    *,
    project_id: str,
    store_id: str,
    file_batch_id: str | None,
    jobs: list[tuple[str, str]],
) -> None:
    """Queued ingest jobs, one per (job id, file id) of the store, in a file batch or none."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO jobs (id, project_id, kind, status, vector_store_id, file_id,
                                 file_batch_id)
               VALUES (%s, %s, 'ingest_file', 'queued', %s, %s, %s)""",
            [(job_id, project_id, store_id, file_id, file_batch_id) for job_id, file_id in jobs],
        )


async def set_queue_job_ids(conn: AsyncConnection[Any], pairs: list[tuple[str, int]]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "UPDATE jobs SET queue_job_id = %s WHERE id = %s", [(qid, jid) for jid, qid in pairs]
        )


_CLAIM_SQL = """
    UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = %s,
           heartbeat_at = clock_timestamp(),
           started_at = coalesce(started_at, clock_timestamp()),
           stage_started_at = CASE WHEN stage IS NULL THEN NULL ELSE clock_timestamp() END
    WHERE id = %s AND status IN ('queued', 'running') AND NOT cancel_requested
    RETURNING *"""


async def claim_job(conn: AsyncConnection[Any], *, job_id: str, worker: str) -> Row | None:
    """Mark the job running on this worker; None when it is already final (nothing to do)."""
    cur = await conn.execute(_CLAIM_SQL, [worker, job_id])
    return await cur.fetchone()


_CLAIMED_SOURCE = ingest_source_sql("c.vector_store_id", "c.file_id", "c.id")


async def claim_ingest_job(
    conn: AsyncConnection[Any], *, job_id: str, worker: str
) -> tuple[IngestJob, IngestSource | None] | None:
    """`claim_job` for an ingest job, typed, with its store file read in the same round trip
    (None once the file has left the store); None when there is nothing to do."""
    cur = await conn.execute(
        f"""WITH claimed AS ({_CLAIM_SQL})
            SELECT c.id, c.project_id, c.vector_store_id, c.file_id, c.file_batch_id,
                   c.attempts, c.worker, c.stage, c.chunks_stored, s.*
            FROM claimed c
            LEFT JOIN LATERAL ({_CLAIMED_SOURCE}) s ON true""",
        [worker, job_id],
    )
    row = await cur.fetchone()
    if row is None:
        return None
    job = IngestJob(
        id=row["id"],
        project_id=row["project_id"],
        vector_store_id=row["vector_store_id"],
        file_id=row["file_id"],
        file_batch_id=row["file_batch_id"],
        attempts=row["attempts"],
        worker=row["worker"],
        stage=row["stage"],
        chunks_stored=row["chunks_stored"],
    )
    return job, None if row["filename"] is None else ingest_source(row)


def _attempt_entry(job: JobRef, outcome: str, error: dict[str, Any] | None) -> Jsonb:
    return Jsonb(
        [
            {
                "attempt": job.attempts,
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "worker": job.worker,
                "outcome": outcome,
                "error": error,
            }
        ]
    )


async def note_vendor_retries(
    conn: AsyncConnection[Any], *, job: JobRef, retries: int, last_status: int | None, detail: str
) -> None:
    """Log vendor faults the embedder retried by itself, so they show on the job."""
    entry = _attempt_entry(job, "vendor retries", None)
    entry.obj[0].update(retries=retries, last_status=last_status, detail=detail)
    await conn.execute(
        "UPDATE jobs SET attempt_log = attempt_log || %s WHERE id = %s", [entry, job.id]
    )


async def finish_succeeded(
    conn: AsyncConnection[Any],
    *,
    job: JobRef,
    usage_bytes: int,
    times: StageTimes | None = None,
    archive_member: bool = True,
) -> FinishedTimes | None:
    """Succeed the job and its store file; with `times` (the worker's own clock, its last
    stage included in `closed`) the row's stage times come from them instead of the row's
    stage_started_at. `archive_member=False` (known to the caller) skips looking for an
    archive to settle. Returns the job's times for metrics."""
    durations = CLOSE_STAGE if times is None else ADD_DURATIONS
    params: list[Any] = [] if times is None else [rounded(times.closed)]
    async with conn.transaction():
        cur = await conn.execute(
            f"""UPDATE jobs SET {durations}, status = 'succeeded', stage = NULL,
                      stage_started_at = NULL, error = NULL, finished_at = clock_timestamp(),
                      attempt_log = attempt_log || %s
                WHERE id = %s RETURNING {FINISHED_TIMES_COLUMNS}""",
            [*params, _attempt_entry(job, "succeeded", None), job.id],
        )
        row = await cur.fetchone()
        await _complete_store_file(conn, job=job, usage_bytes=usage_bytes)
        if archive_member:
            await _settle_archive_of(conn, job_id=job.id)
    return None if row is None else finished_times_of(row)


@dataclass(frozen=True)
class WholeFileFinish:
    """The finish of a file embedded at once: its one checkpoint, the bytes of its chunks'
    text and the worker's stage times; `archive_member` False skips the archive lookup."""

    job: JobRef
    checkpoint: WholeFileCheckpoint
    usage_bytes: int
    times: StageTimes
    archive_member: bool


async def finish_whole_files(
    conn: AsyncConnection[Any], finishes: Sequence[WholeFileFinish]
) -> dict[str, FinishedTimes]:
    """Record each file's one checkpoint and succeed its job and store file, in one update of
    their rows (the caller's transaction holds their chunks): one job event per job,
    `job.succeeded` with progress n/n. Returns the finished jobs' times by job id; a job whose
    cancel was requested (or that is gone) is left out and nothing is written for it."""
    ordered = sorted(finishes, key=lambda f: f.job.id)  # rows locked in one order by all
    cur = await conn.execute(
        f"""UPDATE jobs j SET
                  stage_durations = j.stage_durations || (
                      SELECT coalesce(jsonb_object_agg(k, round(
                          coalesce((j.stage_durations->>k)::numeric, 0) + v::numeric, 3)), '{{}}')
                      FROM jsonb_each_text(u.add_durations) AS t(k, v)),
                  status = 'succeeded', stage = NULL, stage_started_at = NULL, error = NULL,
                  finished_at = clock_timestamp(), attempt_log = j.attempt_log || u.entry,
                  progress_done = u.n_chunks, progress_total = u.n_chunks,
                  progress_unit = 'chunks', chunks_stored = true,
                  checkpoints_embedded = j.checkpoints_embedded + (u.n_computed > 0)::int,
                  checkpoints_reused = j.checkpoints_reused + (u.n_computed = 0)::int,
                  embeddings_computed = j.embeddings_computed + u.n_computed,
                  embeddings_cached = j.embeddings_cached + u.n_chunks - u.n_computed,
                  heartbeat_at = clock_timestamp()
            FROM unnest(%s::text[], %s::jsonb[], %s::jsonb[], %s::int[], %s::int[])
                 AS u(job_id, add_durations, entry, n_chunks, n_computed)
            WHERE j.id = u.job_id AND NOT j.cancel_requested
            RETURNING j.id AS job_id, {FINISHED_TIMES_COLUMNS}""",
        [
            [f.job.id for f in ordered],
            [rounded(_whole_file_durations(f)) for f in ordered],
            [_attempt_entry(f.job, "succeeded", None) for f in ordered],
            [f.checkpoint.chunks for f in ordered],
            [f.checkpoint.computed for f in ordered],
        ],
    )
    finished = {row["job_id"]: finished_times_of(row) for row in await cur.fetchall()}
    done = [f for f in ordered if f.job.id in finished]
    if done:
        await conn.execute(
            """UPDATE vector_store_files v SET status = 'completed', last_error = NULL,
                      usage_bytes = u.usage_bytes
               FROM unnest(%s::text[], %s::bigint[]) AS u(job_id, usage_bytes)
               WHERE v.job_id = u.job_id""",
            [[f.job.id for f in done], [f.usage_bytes for f in done]],
        )
    for f in done:
        if f.archive_member:
            await _settle_archive_of(conn, job_id=f.job.id)
    return finished


def _whole_file_durations(finish: WholeFileFinish) -> dict[str, float]:
    durations = dict(finish.times.closed)
    for key, seconds in finish.checkpoint.timings.items():
        durations[key] = durations.get(key, 0.0) + seconds
    return durations


async def _complete_store_file(
    conn: AsyncConnection[Any], *, job: JobRef, usage_bytes: int
) -> None:
    await conn.execute(
        """UPDATE vector_store_files SET status = 'completed', last_error = NULL,
                  usage_bytes = %s WHERE job_id = %s""",
        [usage_bytes, job.id],
    )


async def finish_failed(conn: AsyncConnection[Any], *, job: JobRef, error: dict[str, Any]) -> None:
    """Fail the job; `error` holds code, message, stage and, where known, chunk and checkpoint
    (its key is `batch`, as the API has always shown it)."""
    job_id = job.id
    async with conn.transaction():
        await conn.execute(
            f"""UPDATE jobs SET {CLOSE_STAGE}, status = 'failed', error = %s,
                      stage_started_at = NULL, finished_at = clock_timestamp(),
                      attempt_log = attempt_log || %s
                WHERE id = %s""",
            [Jsonb(error), _attempt_entry(job, "failed", error), job_id],
        )
        await conn.execute(
            """UPDATE vector_store_files SET status = 'failed', last_error = %s
               WHERE job_id = %s""",
            [Jsonb({"code": error["code"], "message": error["message"]}), job_id],
        )
        await conn.execute(
            "DELETE FROM chunks c USING jobs j WHERE j.id = %s "
            "AND c.vector_store_id = j.vector_store_id AND c.file_id = j.file_id",
            [job_id],
        )
        await _settle_archive_of(conn, job_id=job_id)


async def finish_cancelled(conn: AsyncConnection[Any], *, job_id: str) -> None:
    """Cancel the job and its file; chunks written so far leave search with it.

    Idempotent: a worker that finds its job already cancelled still clears what it wrote.
    """
    async with conn.transaction():
        await conn.execute(
            f"""UPDATE jobs SET {CLOSE_STAGE}, status = 'cancelled', stage_started_at = NULL,
                      finished_at = clock_timestamp()
                WHERE id = %s AND status IN ('queued', 'running')""",
            [job_id],
        )
        await conn.execute(
            "UPDATE vector_store_files SET status = 'cancelled' WHERE job_id = %s", [job_id]
        )
        await conn.execute(
            "DELETE FROM chunks c USING jobs j WHERE j.id = %s AND j.status = 'cancelled' "
            "AND c.vector_store_id = j.vector_store_id AND c.file_id = j.file_id",
            [job_id],
        )
        await _settle_archive_of(conn, job_id=job_id)


async def release_job(
    conn: AsyncConnection[Any], *, job: JobRef, reason: str, error: dict[str, Any] | None = None
) -> None:
    """Hand a running job back to the queue (shutdown, transient fault); progress is kept."""
    await conn.execute(
        f"""UPDATE jobs SET {CLOSE_STAGE}, status = 'queued', stage_started_at = NULL,
                  worker = NULL, attempt_log = attempt_log || %s, error = coalesce(%s, error)
            WHERE id = %s AND status = 'running'""",
        [_attempt_entry(job, reason, error), Jsonb(error) if error else None, job.id],
    )


async def start_waiting_for_members(
    conn: AsyncConnection[Any], *, job_id: str, members: int, result: dict[str, Any]
) -> None:
    """An archive is expanded: its job now waits in stage 'members' for `members` jobs."""
    await conn.execute(
        f"""UPDATE jobs SET {CLOSE_STAGE}, stage = 'members', stage_started_at = clock_timestamp(),
                  progress_done = 0, progress_total = %s, progress_unit = 'members',
                  result = %s, worker = NULL, heartbeat_at = clock_timestamp()
            WHERE id = %s""",
        [members, Jsonb(result), job_id],
    )


async def _settle_archive_of(conn: AsyncConnection[Any], *, job_id: str) -> None:
    """In a finish's transaction: when the job was its archive's last member in progress,
    finish the archive's job too (which settles an archive around that one in turn)."""
    await _finish_archive(conn, await archives_db.after_job_finished(conn, job_id=job_id))


async def _finish_archive(
    conn: AsyncConnection[Any], outcome: archives_db.ArchiveOutcome | None
) -> None:
    if outcome is None:
        return
    if outcome.status == "cancelled":
        await finish_cancelled(conn, job_id=outcome.job.id)
    elif outcome.status == "succeeded":
        await finish_succeeded(conn, job=outcome.job, usage_bytes=0)
    else:
        assert outcome.error is not None
        await finish_failed(conn, job=outcome.job, error=outcome.error)


async def settle_waiting_archives(conn: AsyncConnection[Any]) -> int:
    """Safety net for the sweeper: settle archives whose members all ended without them."""
    waiting = await archives_db.waiting_archives(conn)
    for archive in waiting:
        if not archive.in_store:  # the archive (or its store) was removed while it waited
            await finish_cancelled(conn, job_id=archive.job_id)
            continue
        async with conn.transaction():
            outcome = await archives_db.settle_archive(
                conn, store_id=archive.store_id, archive_file_id=archive.file_id
            )
            await _finish_archive(conn, outcome)
    return len(waiting)
