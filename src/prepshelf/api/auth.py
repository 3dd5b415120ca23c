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
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
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


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, keys: list[str], *, ttl_s: float = 2.0) -> None:
        self._static = [_digest(k) for k in keys]
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}

    def _static_match(self, digest: str) -> bool:
        found = False
        for known in self._static:  # no early exit: time does not depend on which key matched
            found |= hmac.compare_digest(digest, known)
        return found

    async def resolve(self, key: str, pool: Any) -> Principal | None:
        digest = _digest(key)
        if self._static_match(digest):
            return Principal(DEFAULT_PROJECT, None, True)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with pool.connection() as conn:
            row = await keys_db.lookup_active_key(conn, key_hash=digest)
            if row is None or not hmac.compare_digest(row["key_hash"], digest):
                self._cache.pop(digest, None)
                return None
            if row["stale"]:
                await keys_db.touch_key(conn, key_id=row["id"])
        principal = Principal(row["project_id"], row["id"], bool(row["is_admin"]))
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl_s, principal)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from this process's cache."""
        for digest, (_, principal) in list(self._cache.items()):
            if principal.key_id == key_id:
                self._cache.pop(digest, None)


async def authenticate(request: Request) -> str:
    """Return the caller's project; 401 (saying nothing about which keys exist) otherwise."""
    principal = await _principal(request)
    request.state.principal = principal
    return principal.project_id


async def _principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    principal = None
    if scheme.lower() == "bearer" and key and len(key) <= _MAX_KEY_CHARS:
        ring: KeyRing = request.app.state.keyring
        principal = await ring.resolve(key, request.app.state.pool)
    if principal is None:
        raise AuthenticationError(
            "Incorrect or missing API key. Send 'Authorization: Bearer <key>'."
        )
    return principal


async def require_admin(request: Request) -> Principal:
    principal = await _principal(request)
    request.state.principal = principal
    if not principal.is_admin:
        raise PermissionDeniedError("This API key may not manage projects and keys")
    return principal
