"""What a project, an API key and an audit event are.

A project is the tenant boundary: every file, store, job and batch belongs to one. A key is
stored only as its hash; what may be shown of it is its prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    """A key as the admin API and `prepshelf keys` show it: never its secret or its hash."""

    id: str
    project_id: str
    project_name: str
    name: str | None
    prefix: str  # the displayable start of the secret
    is_admin: bool
    created_at: datetime
    last_used_at: datetime | None  # coarse: touched at most once a minute
    revoked_at: datetime | None


@dataclass(frozen=True)
class ActiveKey:
    """An unrevoked key found by its hash, as authentication reads it."""

    id: str
    project_id: str
    is_admin: bool
    key_hash: str
    stale: bool  # last_used_at is older than the touch interval


@dataclass(frozen=True)
class AuditEvent:
    """One state-changing request, recorded after its answer."""

    id: str
    project_id: str
    actor: str
    method: str
    route: str
    object_id: str | None
    path_params: dict[str, Any]
    status_code: int
    request_id: str | None
    created_at: datetime
