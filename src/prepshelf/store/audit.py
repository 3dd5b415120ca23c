"""Audit rows: who called which mutating route on which object, when, with what outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from prepshelf.domain.keys import AuditEvent
from prepshelf.store.pages import Page, PageRequest, fetch_page
from prepshelf.store.retention import delete_in_chunks, table_exists
from prepshelf.store.rows import typed


async def insert_event(
    conn: AsyncConnection[Any],
    *,
    event_id: str,
    project_id: str,
    actor: str,
    method: str,
    route: str,
    object_id: str | None,
    path_params: dict[str, str],
    status_code: int,
    request_id: str | None,
    created_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO audit_events (id, project_id, actor, method, route, object_id,
                                     path_params, status_code, request_id, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        [
            event_id,
            project_id,
            actor,
            method,
            route,
            object_id,
            Jsonb(path_params),
            status_code,
            request_id,
            created_at,
        ],
    )


async def list_events(
    conn: AsyncConnection[Any],
    *,
    project_id: str,
    page: PageRequest,
    object_id: str | None = None,
    method: str | None = None,
) -> Page[AuditEvent]:
    where, params = ["project_id = %s"], [project_id]
    for column, value in (("object_id", object_id), ("method", method)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    result = await fetch_page(
        conn,
        select="SELECT * FROM audit_events",
        where=" AND ".join(where),
        params=params,
        key_created="created_at",
        key_id="id",
        cursor_lookup="SELECT created_at FROM audit_events WHERE project_id = %s AND id = %s",
        cursor_params=[project_id],
        page=page,
    )
    return result.map(lambda row: typed(AuditEvent, row))


async def prune_events(conn: AsyncConnection[Any], *, older_than_s: float) -> int:
    """Delete audit rows older than `older_than_s`; 0 when the table does not exist."""
    if not await table_exists(conn, "audit_events"):
        return 0
    return await delete_in_chunks(
        conn,
        "audit_events",
        "created_at < clock_timestamp() - make_interval(secs => %s)",
        [older_than_s],
    )
