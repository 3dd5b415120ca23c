"""/v1/audit: the caller's project's audit trail, newest first by default."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from prepshelf.api.audit import audit_object
from prepshelf.api.deps import ConnDep, PageDep, ProjectDep
from prepshelf.api.views import list_object
from prepshelf.store import audit as audit_db

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("")
async def list_audit_events(
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    object_id: Annotated[str | None, Query(max_length=200)] = None,
    method: Annotated[Literal["POST", "PUT", "PATCH", "DELETE"] | None, Query()] = None,
) -> dict[str, Any]:
    result = await audit_db.list_events(
        conn, project_id=project, page=page, object_id=object_id, method=method
    )
    return list_object([audit_object(r) for r in result.rows], result.has_more)
