"""Bearer API keys. Keys are compared as SHA-256 digests in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from prepshelf.errors import AuthenticationError

DEFAULT_PROJECT = "default"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [hash_key(k) for k in keys]

    def project_for(self, key: str) -> str | None:
        digest = hash_key(key)
        found = False
        for known in self._digests:  # no early exit: time does not depend on which key matched
            found |= hmac.compare_digest(digest, known)
        return DEFAULT_PROJECT if found else None


def authenticate(request: Request) -> str:
    """Return the caller's project; 401 (saying nothing about which keys exist) otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    ring: KeyRing = request.app.state.keyring
    project = ring.project_for(key.strip()) if scheme.lower() == "bearer" and key else None
    if project is None:
        raise AuthenticationError(
            "Incorrect or missing API key. Send 'Authorization: Bearer <key>'."
        )
    return project
