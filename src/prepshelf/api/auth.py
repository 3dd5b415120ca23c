"""Bearer API keys: who is calling, for which project, and may they administer keys.

Two sources of keys:
- `PREPSHELF_API_KEYS` (settings): keys of the `default` project with admin rights, so the
  operator who configured the server can create projects and keys over the API.
- the `api_keys` table (`prepshelf keys create`, `/v1/admin/keys`): found by the unique index
  on their SHA-256 digest, then compared with `hmac.compare_digest`.

Resolved database keys are cached for `key_cache_ttl_s` (a couple of seconds), so a revoked
key stops working within that time in every API process; a revoke through this process's
admin API takes effect at once. Unknown keys are never cached, so new keys work immediately.
Every failure is the same 401: it never says whether a key exists or was revoked.

The front gate (`api/gate.py`) resolves the key once, before any body is read, and leaves the
principal in the request scope; the route dependencies below reuse it. A bearer value that is
neither a settings key nor shaped like a database key is refused without a lookup, and lookups
run at most `auth_lookup_concurrency` at a time, so a flood of made-up keys cannot take the
connection pool from everyone else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from prepshelf.errors import AuthenticationError, PermissionDeniedError
from prepshelf.store import keys as keys_db

log = logging.getLogger(__name__)

DEFAULT_PROJECT = keys_db.DEFAULT_PROJECT
_MAX_CACHED = 10_000
_MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class Principal:
    project_id: str
    key_id: str | None  # None for a key from PREPSHELF_API_KEYS
    is_admin: bool
    # Who to count for rate limits: the key id, or a digest prefix of a settings key.
    subject: str = ""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_key(authorization: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, if it is one of sane length."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() == "bearer" and key and len(key) <= _MAX_KEY_CHARS:
        return key
    return None


class KeyRing:
    def __init__(self, keys: list[str], *, ttl_s: float = 2.0, lookups: int = 4) -> None:
        self._static = [_digest(k) for k in keys]
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lookups = lookups
        self._lookup_slots: asyncio.Semaphore | None = None  # made on the serving loop

    def _static_match(self, digest: str) -> bool:
        found = False
        for known in self._static:  # no early exit: time does not depend on which key matched
            found |= hmac.compare_digest(digest, known)
        return found

    async def resolve(self, key: str, pool: Any) -> Principal | None:
        digest = _digest(key)
        if self._static_match(digest):
            return Principal(DEFAULT_PROJECT, None, True, subject=f"settings-key:{digest[:16]}")
        if not keys_db.has_key_shape(key):
            return None
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._lookup_slots is None:
            self._lookup_slots = asyncio.Semaphore(self._lookups)
        async with self._lookup_slots, pool.connection() as conn:
            found = await keys_db.lookup_active_key(conn, key_hash=digest)
            if found is None or not hmac.compare_digest(found.key_hash, digest):
                self._cache.pop(digest, None)
                return None
            if found.stale:
                await keys_db.touch_key(conn, key_id=found.id)
        principal = Principal(found.project_id, found.id, found.is_admin, subject=found.id)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl_s, principal)
        return principal

    async def still_active(self, principal: Principal, pool: Any) -> bool:
        """Whether the key behind `principal` is still valid (read from the database: a long
        stream must notice a revoke made by any process)."""
        if principal.key_id is None:
            return True  # a settings key lives as long as the process
        async with pool.connection() as conn:
            return await keys_db.is_key_active(conn, key_id=principal.key_id)

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from this process's cache."""
        for digest, (_, principal) in list(self._cache.items()):
            if principal.key_id == key_id:
                self._cache.pop(digest, None)


def unauthenticated() -> AuthenticationError:
    return AuthenticationError("Incorrect or missing API key. Send 'Authorization: Bearer <key>'.")


def principal_in(scope: Mapping[str, Any]) -> Principal | None:
    """The principal the gate (or an earlier dependency) resolved for this request."""
    found = (scope.get("state") or {}).get("principal")
    return found if isinstance(found, Principal) else None


async def authenticate(request: Request) -> str:
    """Return the caller's project; 401 (saying nothing about which keys exist) otherwise."""
    return (await _principal(request)).project_id


async def _principal(request: Request) -> Principal:
    principal = principal_in(request.scope)
    if principal is not None:
        return principal
    key = bearer_key(request.headers.get("authorization", ""))
    if key is not None:
        ring: KeyRing = request.app.state.keyring
        principal = await ring.resolve(key, request.app.state.pool)
    if principal is None:
        raise unauthenticated()
    request.state.principal = principal
    return principal


async def require_admin(request: Request) -> Principal:
    principal = await _principal(request)
    if not principal.is_admin:
        raise PermissionDeniedError("This API key may not manage projects and keys")
    return principal
