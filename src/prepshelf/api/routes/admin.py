"""/v1/admin: projects and API keys, for admin keys only.

An admin key manages every project's keys (it is the server operator's key); its own data
routes stay scoped to its own project like any other key. Secrets appear once, in the
response that creates them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from prepshelf.api.auth import Principal, require_admin
from prepshelf.api.deps import ConnDep, PageDep
from prepshelf.api.idempotency import IdempotentRoute
from prepshelf.api.schemas import ApiKeyCreate, ProjectCreate
from prepshelf.api.views import list_object, ts
from prepshelf.domain.keys import ApiKey, Project
from prepshelf.errors import NotFoundError
from prepshelf.store import keys as keys_db

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=IdempotentRoute)

AdminDep = Annotated[Principal, Depends(require_admin)]


def project_object(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "object": "project",
        "name": project.name,
        "created_at": ts(project.created_at),
    }


def key_object(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "project_id": key.project_id,
        "redacted_value": key.prefix + "…",
        "is_admin": key.is_admin,
        "created_at": ts(key.created_at),
        "last_used_at": ts(key.last_used_at),
        "revoked_at": ts(key.revoked_at),
    }


@router.post("/projects")
async def create_project(body: ProjectCreate, admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    return project_object(await keys_db.create_project(conn, name=body.name))


@router.get("/projects")
async def list_projects(admin: AdminDep, conn: ConnDep, page: PageDep) -> dict[str, Any]:
    result = await keys_db.list_projects(conn, page=page)
    return list_object([project_object(r) for r in result.rows], result.has_more)


async def _load_project(conn: Any, project_id: str) -> Project:
    project = await keys_db.get_project(conn, project_id=project_id)
    if project is None:
        raise NotFoundError(f"No such project: {project_id}", param="project_id")
    return project


@router.get("/projects/{project_id}")
async def retrieve_project(project_id: str, admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    return project_object(await _load_project(conn, project_id))


@router.post("/keys")
async def create_key(body: ApiKeyCreate, admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    await _load_project(conn, body.project_id)
    key, secret = await keys_db.create_key(
        conn, project_id=body.project_id, name=body.name, is_admin=body.is_admin
    )
    return {**key_object(key), "value": secret}


@router.get("/keys")
async def list_keys(
    admin: AdminDep,
    conn: ConnDep,
    page: PageDep,
    project_id: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    result = await keys_db.list_keys(conn, project_id=project_id, page=page)
    return list_object([key_object(r) for r in result.rows], result.has_more)


@router.get("/keys/{key_id}")
async def retrieve_key(key_id: str, admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    key = await keys_db.get_key(conn, key_id=key_id)
    if key is None:
        raise NotFoundError(f"No such API key: {key_id}", param="key_id")
    return key_object(key)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    key_id: str, request: Request, admin: AdminDep, conn: ConnDep
) -> dict[str, Any]:
    key = await keys_db.revoke_key(conn, key_id=key_id)
    if key is None:
        raise NotFoundError(f"No such API key: {key_id}", param="key_id")
    request.app.state.keyring.forget(key_id)
    return key_object(key)
