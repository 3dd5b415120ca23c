"""Several `prepshelf api` and `prepshelf worker` processes sharing one database and one
data dir, as a multi-machine deployment would (each process its own log file), and a client
that spreads requests over the APIs and fails over when one is gone."""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from support.service import base_env, free_port, stop_processes, tail_logs


class Cluster:
    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        *,
        apis: int = 2,
        workers: int = 3,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.log_dir = data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.api_key = "sk-test-" + secrets.token_hex(8)
        self.ports = [free_port() for _ in range(apis)]
        self._n_workers = workers
        self._env = base_env(
            PREPSHELF_DATABASE_URL=database_url,
            PREPSHELF_DATA_DIR=str(data_dir),
            PREPSHELF_API_KEYS=self.api_key,
            PREPSHELF_POLL_AFTER_MS="200",
            **(extra_env or {}),
        )
        self.apis: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, role: str, name: str, **env: str) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "wb") as log:  # the child keeps its copy
            return subprocess.Popen(
                [sys.executable, "-m", "prepshelf", role],
                env={**self._env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, timeout_s: float = 180) -> Cluster:
        """Start every process at once (they race to migrate), then wait until all are up."""
        for i, port in enumerate(self.ports):
            self.apis.append(self._spawn("api", f"api-{i}", PREPSHELF_PORT=str(port)))
        for i in range(self._n_workers):
            self.workers.append(self._spawn("worker", f"worker-{i}"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [p for p in [*self.apis, *self.workers] if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a process exited during start-up:\n{self.logs()}")
            if self._all_up():
                return self
            time.sleep(0.5)
        raise RuntimeError(f"cluster did not come up:\n{self.logs()}")

    def _all_up(self) -> bool:
        for i in range(self._n_workers):
            log = self.log_dir / f"worker-{i}.log"
            if " ready" not in log.read_text(errors="replace"):
                return False
        for port in self.ports:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        return True

    def stop(self) -> None:
        stop_processes([*self.workers, *self.apis])

    def logs(self) -> str:
        return tail_logs(self.log_dir, limit=4000)

    def db(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row)

    def client(self) -> SpreadClient:
        return SpreadClient([f"http://127.0.0.1:{p}" for p in self.ports], self.api_key)


class SpreadClient:
    """Round-robin over base URLs; a request that could not reach one API goes to the next.

    Only failures where the request never reached a server (connection refused) are retried
    for any method; a dropped response is retried only for GET, which is safe to repeat.
    """

    def __init__(self, base_urls: list[str], api_key: str) -> None:
        self._clients = [
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60)
            for url in base_urls
        ]
        self._next = itertools.cycle(range(len(base_urls)))
        self.used: dict[str, int] = {url: 0 for url in base_urls}
        self.failovers = 0

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        start = next(self._next)
        last: Exception | None = None
        for attempt in range(2 * len(self._clients)):
            client = self._clients[(start + attempt) % len(self._clients)]
            try:
                response = client.request(method, path, **kwargs)
            except httpx.ConnectError as exc:
                last = exc
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if method != "GET":
                    raise
                last = exc
            else:
                self.used[str(client.base_url).rstrip("/")] += 1
                return response
            self.failovers += 1
            time.sleep(0.2)
        assert last is not None
        raise last

    def close(self) -> None:
        for client in self._clients:
            client.close()
