"""Idempotency-Key claims: one row per (project, key), its primary key the lock.

A claim is an upsert that only succeeds when the key is new, expired, or held by a request
that never finished (stale), so concurrent duplicates never both win. The row then waits
for the first answer (status and JSON body) that duplicates replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

_CLAIM = """
    INSERT INTO idempotency_keys (project_id, key, endpoint, fingerprint, expires_at)
    VALUES (%(project)s, %(key)s, %(endpoint)s, %(fingerprint)s,
            clock_timestamp() + %(ttl)s * interval '1 second')
    ON CONFLICT (project_id, key) DO UPDATE
        SET endpoint = EXCLUDED.endpoint, fingerprint = EXCLUDED.fingerprint,
            status_code = NULL, response = NULL, created_at = clock_timestamp(),
            expires_at = EXCLUDED.expires_at
        WHERE idempotency_keys.expires_at < clock_timestamp()
           OR (idempotency_keys.response IS NULL
               AND idempotency_keys.created_at
                   < clock_timestamp() - %(stale)s * interval '1 second')
    RETURNING true AS claimed"""

# Bounded, so that the request that happens to purge pays for at most 500 rows.
_PURGE_EXPIRED = """
    DELETE FROM idempotency_keys WHERE ctid IN (
        SELECT ctid FROM idempotency_keys WHERE expires_at < clock_timestamp() LIMIT 500)"""


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: Any  # the first answer's JSON body


@dataclass(frozen=True)
class IdempotencyRecord:
    """Who holds a key: the request it was claimed for and, once answered, that answer."""

    endpoint: str
    fingerprint: str
    answer: StoredAnswer | None  # None while the first request is in flight


async def purge_expired(conn: AsyncConnection[Any]) -> None:
    await conn.execute(_PURGE_EXPIRED)


async def claim(
    conn: AsyncConnection[Any],
    *,
    project_id: str,
    key: str,
    endpoint: str,
    fingerprint: str,
    ttl_s: float,
    stale_s: float,
) -> bool:
    """Take the key for this request; False when another request holds it (or answered)."""
    args = {
        "project": project_id,
        "key": key,
        "endpoint": endpoint,
        "fingerprint": fingerprint,
        "ttl": ttl_s,
        "stale": stale_s,
    }
    return await (await conn.execute(_CLAIM, args)).fetchone() is not None


async def get_record(
    conn: AsyncConnection[Any], *, project_id: str, key: str
) -> IdempotencyRecord | None:
    row = await (
        await conn.execute(
            "SELECT endpoint, fingerprint, status_code, response FROM idempotency_keys "
            "WHERE project_id = %s AND key = %s",
            [project_id, key],
        )
    ).fetchone()
    if row is None:
        return None
    return IdempotencyRecord(
        endpoint=row["endpoint"],
        fingerprint=row["fingerprint"],
        answer=(
            StoredAnswer(int(row["status_code"]), row["response"])
            if row["response"] is not None
            else None
        ),
    )


async def save_response(
    conn: AsyncConnection[Any], *, project_id: str, key: str, status_code: int, response: Any
) -> None:
    """Remember the first answer, for duplicates to replay."""
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = %s, response = %s "
        "WHERE project_id = %s AND key = %s",
        [status_code, Jsonb(response), project_id, key],
    )


async def release(conn: AsyncConnection[Any], *, project_id: str, key: str) -> None:
    """Free a key whose request did not succeed (an answered key is kept)."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE project_id = %s AND key = %s AND response IS NULL",
        [project_id, key],
    )
