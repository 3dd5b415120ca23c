"""Shared fixtures: the session's PostgreSQL, per-module databases and running services."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import support.service
from support.postgres import TestPostgres
from support.service import REAL_MODEL, Service

# The test run never reads a developer's PREPSHELF_* settings.
for _name in [n for n in os.environ if n.startswith("PREPSHELF_") and n != "PREPSHELF_CORPUS_DIR"]:
    del os.environ[_name]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Services in tests run the fake embedder unless a test is about embedding (see REAL_MODEL
# and the real_model marker).
support.service.DEFAULT_BACKEND = "fake"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    server = TestPostgres(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def database_url(postgres: TestPostgres) -> str:
    return postgres.new_database()


@pytest.fixture(scope="module")
def service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Service]:
    """The API and one worker process on a fresh database (one per test module); the real
    model only in modules marked real_model."""
    real = request.node.get_closest_marker("real_model") is not None
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("svc")),
        workers=1,
        extra_env=REAL_MODEL if real else None,
    ) as svc:
        yield svc
