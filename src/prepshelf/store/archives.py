"""Archives and their members: child file rows, and the archive's outcome once members finish.

An archive's job expands it into child files (each with its own job), then waits in stage
'members'. Every finish transition of a job (store/jobs.py) asks `after_job_finished` in its
own transaction: when the job's file is a member and it was the last one still in progress,
the answer is how the archive ends (completed if any member completed), and the transition
finishes the archive's job right there, so the archive's file never reads final while a
member is in progress, and never stays in progress after the last one ended. This module
decides; store/jobs.py carries the transitions out (it imports this one, never the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.archives import outcome_message
from prepshelf.domain.jobs import JobAttempt

Row = dict[str, Any]

_FAILED_LISTED = 20


@dataclass(frozen=True)
class ArchiveOutcome:
    """How an archive's job ends now that its last member has: `error` for 'failed'."""

    job: JobAttempt
    status: Literal["succeeded", "failed", "cancelled"]
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class WaitingArchive:
    """An archive's job in stage 'members' whose members have all ended without settling it."""

    job_id: str
    store_id: str
    file_id: str
    in_store: bool  # False: the archive (or its store) was removed while it waited


async def tree_usage(conn: AsyncConnection[Any], *, file_id: str) -> Row:
    """The file's depth and root, and the bytes and members its archive tree already holds."""
    cur = await conn.execute(
        """SELECT f.archive_depth AS depth, coalesce(f.archive_root_id, f.id) AS root_id,
                  coalesce(u.bytes, 0)::bigint AS used_bytes, coalesce(u.n, 0) AS used_members
           FROM files f
           LEFT JOIN LATERAL (
               SELECT sum(d.bytes) AS bytes, count(*) AS n FROM files d
               WHERE d.archive_root_id = coalesce(f.archive_root_id, f.id)) u ON true
           WHERE f.id = %s""",
        [file_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return row


@dataclass(frozen=True)
class ArchiveFile:
    """The file row of an archive being expanded: what its members inherit."""

    id: str
    project_id: str
    purpose: str
    archive_root_id: str | None
    archive_depth: int


async def get_archive_file(conn: AsyncConnection[Any], *, file_id: str) -> ArchiveFile | None:
    row = await (await conn.execute("SELECT * FROM files WHERE id = %s", [file_id])).fetchone()
    if row is None:
        return None
    return ArchiveFile(
        id=row["id"],
        project_id=row["project_id"],
        purpose=row["purpose"],
        archive_root_id=row["archive_root_id"],
        archive_depth=row["archive_depth"],
    )


async def insert_members(
    conn: AsyncConnection[Any], *, parent: ArchiveFile, members: list[tuple[str, str, int, str]]
) -> None:
    """Child file rows: (file id, sanitised member path, bytes, sha256); blobs at files/<id>."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO files (id, project_id, filename, purpose, bytes, sha256, blob_key,
                                  parent_file_id, archive_root_id, archive_depth)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    fid,
                    parent.project_id,
                    name,
                    parent.purpose,
                    size,
                    sha,
                    f"files/{fid}",
                    parent.id,
                    parent.archive_root_id or parent.id,
                    parent.archive_depth + 1,
                )
                for fid, name, size, sha in members
            ],
        )


async def set_result(conn: AsyncConnection[Any], *, job_id: str, result: dict[str, Any]) -> None:
    await conn.execute("UPDATE jobs SET result = %s WHERE id = %s", [Jsonb(result), job_id])


async def with_member_jobs(conn: AsyncConnection[Any], *, job_ids: list[str]) -> list[str]:
    """`job_ids` plus the unfinished jobs of their members, nested archives included."""
    if not job_ids:
        return job_ids
    cur = await conn.execute(
        """WITH RECURSIVE tree (id, vector_store_id, file_id) AS (
               SELECT id, vector_store_id, file_id FROM jobs WHERE id = ANY(%s)
               UNION
               SELECT j.id, j.vector_store_id, j.file_id
               FROM tree t
               JOIN files f ON f.parent_file_id = t.file_id
               JOIN vector_store_files vsf
                    ON vsf.vector_store_id = t.vector_store_id AND vsf.file_id = f.id
               JOIN jobs j ON j.id = vsf.job_id AND j.status IN ('queued', 'running'))
           SELECT id FROM tree""",
        [job_ids],
    )
    found = [r["id"] for r in await cur.fetchall()]
    return list(dict.fromkeys([*job_ids, *found]))


async def after_job_finished(conn: AsyncConnection[Any], *, job_id: str) -> ArchiveOutcome | None:
    """Asked by every finish transition, in its transaction: how the job's archive ends, if
    the job's file was its last member in progress."""
    cur = await conn.execute(
        """SELECT f.parent_file_id, j.vector_store_id FROM jobs j JOIN files f ON f.id = j.file_id
           WHERE j.id = %s AND f.parent_file_id IS NOT NULL""",
        [job_id],
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return await settle_archive(
        conn, store_id=row["vector_store_id"], archive_file_id=row["parent_file_id"]
    )


async def settle_archive(
    conn: AsyncConnection[Any], *, store_id: str, archive_file_id: str
) -> ArchiveOutcome | None:
    """Count the archive's members (its progress); when none is in progress, record what
    they came to and return how the archive's job ends (store/jobs.py finishes it)."""
    # Lock order: the archive's store file, then its job (every member's finish does the same).
    vsf = await (
        await conn.execute(
            """SELECT job_id, status FROM vector_store_files
               WHERE vector_store_id = %s AND file_id = %s FOR UPDATE""",
            [store_id, archive_file_id],
        )
    ).fetchone()
    if vsf is None or vsf["status"] != "in_progress" or vsf["job_id"] is None:
        return None
    job = await (
        await conn.execute(
            """SELECT j.*, f.filename FROM jobs j JOIN files f ON f.id = j.file_id
               WHERE j.id = %s FOR UPDATE OF j""",
            [vsf["job_id"]],
        )
    ).fetchone()
    if job is None or job["stage"] != "members" or job["status"] not in ("queued", "running"):
        return None  # still expanding: its own transaction will count the members
    members = await (
        await conn.execute(
            """SELECT f.filename, coalesce(vsf.status, 'removed') AS status, vsf.last_error
               FROM files f
               LEFT JOIN vector_store_files vsf
                    ON vsf.vector_store_id = %s AND vsf.file_id = f.id
               WHERE f.parent_file_id = %s
               ORDER BY f.filename""",
            [store_id, archive_file_id],
        )
    ).fetchall()
    pending = sum(1 for m in members if m["status"] == "in_progress")
    await conn.execute(
        "UPDATE jobs SET progress_done = %s, progress_total = %s WHERE id = %s",
        [len(members) - pending, len(members), job["id"]],
    )
    if pending:
        return None
    result = dict(job["result"] or {})
    counts = {s: 0 for s in ("completed", "failed", "cancelled", "removed")}
    failed: list[tuple[str, str]] = []
    for m in members:
        counts[m["status"]] += 1
        if m["status"] == "failed":
            failed.append((m["filename"], _member_reason(m["filename"], m["last_error"])))
    result.update(counts)
    result["failed_members"] = [{"name": n, "reason": r} for n, r in failed[:_FAILED_LISTED]]
    await set_result(conn, job_id=job["id"], result=result)
    attempt = JobAttempt(id=job["id"], attempts=job["attempts"], worker=job["worker"])
    if job["cancel_requested"]:
        return ArchiveOutcome(attempt, "cancelled")
    if counts["completed"]:
        return ArchiveOutcome(attempt, "succeeded")
    refused = [(r["name"], r["reason"]) for r in result.get("refused", [])]
    reason = outcome_message(
        failed=failed,
        failed_total=len(failed),
        refused=refused,
        refused_total=result.get("refused_total", len(refused)),
        others=counts["cancelled"] + counts["removed"],
    )
    error = {
        "code": "invalid_file",
        "message": f"{job['filename']}: members: {reason}",
        "reason": reason,
        "stage": "members",
        "file_id": job["file_id"],
    }
    return ArchiveOutcome(attempt, "failed", error)


async def waiting_archives(conn: AsyncConnection[Any]) -> list[WaitingArchive]:
    """Archives' jobs in stage 'members' with no member left in progress (the sweeper's
    safety net: members normally settle their archive themselves)."""
    rows = await (
        await conn.execute(
            """SELECT j.id, j.vector_store_id, j.file_id,
                      EXISTS (SELECT 1 FROM vector_store_files v
                              WHERE v.vector_store_id = j.vector_store_id
                                AND v.file_id = j.file_id AND v.job_id = j.id) AS in_store
               FROM jobs j
               WHERE j.stage = 'members' AND j.status IN ('queued', 'running')
                 AND NOT EXISTS (
                     SELECT 1 FROM files f JOIN vector_store_files vsf
                         ON vsf.file_id = f.id AND vsf.vector_store_id = j.vector_store_id
                     WHERE f.parent_file_id = j.file_id AND vsf.status = 'in_progress')"""
        )
    ).fetchall()
    return [
        WaitingArchive(r["id"], r["vector_store_id"], r["file_id"], r["in_store"]) for r in rows
    ]


def _member_reason(filename: str, last_error: dict[str, Any] | None) -> str:
    message = str((last_error or {}).get("message") or "failed")
    prefix = f"{filename}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
