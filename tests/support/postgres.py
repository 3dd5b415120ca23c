"""One embedded PostgreSQL per test session; a fresh database per test module.

The schema is migrated once into a template database, and each module's database is a
clone of it (CREATE DATABASE … TEMPLATE), which takes milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from prepshelf.embedded import EmbeddedPostgres
from prepshelf.store.migrate import apply_migrations
from support.service import Service

TEMPLATE = "prepshelf_template"


def sql(database_url: str, query: str, args: list[Any] | None = None) -> list[dict[str, Any]]:
    """Run one statement on its own autocommit connection; its rows, if it returns any."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, args or [])
        return cur.fetchall() if cur.description else []


class TestPostgres:
    def __init__(self, root: Path) -> None:
        self._embedded = EmbeddedPostgres(root / "postgres")
        self.admin_url = ""

    def start(self) -> TestPostgres:
        self.admin_url = self._embedded.start()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        apply_migrations(self.url(TEMPLATE))
        return self

    def url(self, dbname: str) -> str:
        return make_conninfo(self.admin_url, dbname=dbname)

    def new_database(self) -> str:
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def stop(self) -> None:
        if os.environ.get("PREPSHELF_KEEP_TEST_DB"):
            return
        self._embedded.stop()


@contextlib.contextmanager
def throwaway_service(
    label: str, *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[Service]:
    """A started service on a PostgreSQL server of its own in a temporary folder, all of it
    stopped and removed afterwards (benchmarks that compare settings run one per setting)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-"))
    pg = TestPostgres(folder / "pg").start()
    svc = Service(pg.new_database(), folder / "data", workers=workers, extra_env=extra_env)
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
