"""Start the real service for tests: `prepshelf api` and `prepshelf worker` processes.

Servers bind 127.0.0.1 on free ports and are stopped at the end; their logs go to files in
the test's temporary directory and are printed when a start fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from prepshelf.api.routes.health import QUEUES_CONSUMED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The local backend of the processes started here. The test suite's conftest sets "fake"
# (no model load: importing sentence-transformers alone is ~8 s of CPU per process, paid by
# every API and worker); tests about embedding (vectors, search quality, clients' vectors)
# pass REAL_MODEL in their environment. Benchmarks keep the real model.
DEFAULT_BACKEND = "torch"
REAL_MODEL = {"PREPSHELF_LOCAL_BACKEND": "torch"}

# For tests that kill or stop workers: a lost worker's job is swept back within seconds.
FAST_RECOVERY = {
    "PREPSHELF_STALL_TIMEOUT_S": "6",
    "PREPSHELF_HEARTBEAT_INTERVAL_S": "1",
    "PREPSHELF_SWEEP_INTERVAL_S": "2",
}


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPSHELF_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PREPSHELF_LOG_LEVEL="INFO")
    env.update(PREPSHELF_LOCAL_BACKEND=DEFAULT_BACKEND)
    env.update(overrides)
    return env


def stop_processes(procs: list[subprocess.Popen[bytes] | None], timeout_s: float = 30) -> None:
    """SIGTERM every live process, then wait; kill whichever does not stop in time."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for proc in live:
        proc.send_signal(signal.SIGTERM)
    for proc in live:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail_logs(folder: Path, limit: int = 6000) -> str:
    """The end of every *.log in `folder`, for a failing test's message."""
    return "\n".join(
        f"==== {p.name}\n{p.read_text(errors='replace')[-limit:]}"
        for p in sorted(folder.glob("*.log"))
    )


class Service:
    """One API process and N worker processes sharing a database and a data dir."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        *,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.port = free_port()
        self.api_key = "sk-test-" + secrets.token_hex(8)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.env = base_env(
            PREPSHELF_DATABASE_URL=database_url,
            PREPSHELF_DATA_DIR=str(data_dir),
            PREPSHELF_API_KEYS=self.api_key,
            PREPSHELF_PORT=str(self.port),
            PREPSHELF_POLL_AFTER_MS="200",
            **(extra_env or {}),
        )
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._n_workers = workers
        self._log_seq = 0
        self._clients: list[Any] = []
        data_dir.mkdir(parents=True, exist_ok=True)

    # --- processes -------------------------------------------------------------------

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        self._log_seq += 1
        # The child writes to its own copy of the descriptor; ours closes at once.
        with open(self.data_dir / f"{role}-{self._log_seq}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "prepshelf", role],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def __enter__(self) -> Service:
        try:
            return self.start()
        except BaseException:  # a start that never got ready leaves no process behind
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Service:
        self.api = self._spawn("api")
        for _ in range(self._n_workers):
            self.workers.append(self._spawn("worker"))
        self.wait_ready(min_workers=self._n_workers)
        return self

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn("worker")
        self.workers.append(proc)
        return proc

    def wait_ready(self, *, min_workers: int = 1, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).json()
                # live_workers counts worker processes; each runs one sub-worker per queue it
                # consumes (QUEUES_CONSUMED): wait until all of them take work.
                if (
                    body.get("live_workers", 0) >= min_workers
                    and body.get("live_sub_workers", 0) >= len(QUEUES_CONSUMED) * min_workers
                ):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if self.api is not None and self.api.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"service did not become ready:\n{self.logs()}")

    def wait_query_model(self, *, timeout_s: float = 180) -> None:
        """Until the API's background load of its query model has ended (/readyz). Timings
        of the front desk must wait for it: the load takes a core and over 100 MB for a few
        seconds after start, which bench/ack.py once measured as the upload's own cost."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                body = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).json()
                if body.get("query_model", {}).get("status") in ("ready", "failed"):
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the query model did not finish loading:\n{self.logs()}")

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        stop_processes([*self.workers, self.api])

    def logs(self) -> str:
        return tail_logs(self.data_dir)

    # --- clients ---------------------------------------------------------------------

    def openai(self, **kwargs: Any) -> Any:
        import openai

        kwargs.setdefault("max_retries", 0)  # a test sees the first failure, not a retry
        client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)
        self._clients.append(client)  # closed with the service
        return client

    def http(self, key: str | None = None) -> httpx.Client:
        """A client of the API with the admin key, or with `key` (another project's)."""
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {key or self.api_key}"},
            timeout=60,
        )
        self._clients.append(client)  # closed with the service, not left to the collector
        return client

    def db(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row)
