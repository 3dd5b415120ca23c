"""The audit trail: one row per mutating API call, written after its response.

Who is the caller's project plus its key's id (or, for a key from the settings, a short
SHA-256 prefix: enough to tell keys apart, useless to an attacker); the key itself is never
stored or logged. Calls that fail authentication are not recorded: they have no project to
be listed under.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI

from prepshelf.domain.keys import AuditEvent
from prepshelf.store import audit as audit_db

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POST routes that only read: a search or an embedding changes nothing worth auditing.
READ_ONLY_SUFFIXES = ("/search",)
READ_ONLY_ROUTES = frozenset({"/v1/embeddings"})


def is_audited(method: str, route: str | None) -> bool:
    return (
        method in MUTATING
        and route is not None
        and route.startswith("/v1/")
        and route not in READ_ONLY_ROUTES
        and not route.endswith(READ_ONLY_SUFFIXES)
    )


@dataclass(frozen=True)
class AuditEntry:
    when: datetime
    method: str
    route: str
    path_params: dict[str, str]
    object_id: str | None
    status_code: int
    request_id: str | None
    project_id: str
    actor: str


def actor_for(authorization: str, key_id: str | None = None) -> str:
    """A database key's id, else a short digest of the key from the settings."""
    if key_id:
        return f"key:{key_id}"
    key = authorization.partition(" ")[2].strip()
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def caller(scope: Mapping[str, Any], authorization: str) -> tuple[str, str] | None:
    """(project, actor) of an authenticated call: `authenticate` leaves its principal in the
    request state. None when the call never authenticated (nothing to list it under)."""
    principal = (scope.get("state") or {}).get("principal")
    project = getattr(principal, "project_id", None)
    if not project:
        return None
    return str(project), actor_for(authorization, getattr(principal, "key_id", None))


async def record(app: FastAPI, entry: AuditEntry) -> None:
    """Write one audit row (run as a background task once the response is sent)."""
    if not app.state.settings.audit_enabled:
        return
    try:
        async with app.state.pool.connection() as conn:
            await audit_db.insert_event(
                conn,
                event_id="audit_" + secrets.token_hex(12),
                project_id=entry.project_id,
                actor=entry.actor,
                method=entry.method,
                route=entry.route,
                object_id=entry.object_id,
                path_params=entry.path_params,
                status_code=entry.status_code,
                request_id=entry.request_id,
                created_at=entry.when,
            )
    except Exception as exc:  # the call itself is done; a lost audit row must say so loudly
        log.error("audit: could not record %s %s: %s", entry.method, entry.route, exc)


def audit_object(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "audit_event",
        "created_at": int(event.created_at.timestamp()),
        "actor": event.actor,
        "project_id": event.project_id,
        "method": event.method,
        "route": event.route,
        "object_id": event.object_id,
        "path_params": event.path_params,
        "status_code": event.status_code,
        "request_id": event.request_id,
    }
