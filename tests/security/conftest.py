"""One hardened service for the security tests: API + one worker, two projects with keys.

Short timeouts (body idle 2 s, headers 2 s, key re-check 1 s, three streams per key) keep the
attacks quick; every other limit is the default a real deployment gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.postgres import TestPostgres
from support.service import Service
from support.tenants import Tenant, new_tenant

SECURITY_ENV = {
    "PREPSHELF_BODY_IDLE_TIMEOUT_S": "2",
    "PREPSHELF_JSON_BODY_TIMEOUT_S": "4",
    "PREPSHELF_UPLOAD_TIMEOUT_S": "20",
    "PREPSHELF_HEADER_TIMEOUT_S": "2",
    "PREPSHELF_KEY_RECHECK_S": "1",
    "PREPSHELF_KEY_MAX_STREAMS": "3",
    "PREPSHELF_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024),
}


@pytest.fixture(scope="package")
def svc(postgres: TestPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Service(
        postgres.new_database(),
        Path(tmp_path_factory.mktemp("security")),
        workers=1,
        extra_env=SECURITY_ENV,
    ) as service:
        yield service


@pytest.fixture(scope="package")
def tenants(svc: Service) -> Iterator[tuple[Tenant, Tenant]]:
    a, b = new_tenant(svc, "sec-a"), new_tenant(svc, "sec-b")
    yield a, b
    a.http.close()
    b.http.close()
