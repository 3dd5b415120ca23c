"""The first hour of a new user: `prepshelf serve` on a port and data dir of their choosing,
then the client commands and `keys` with nothing but that data dir."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.service import base_env, free_port


def run(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prepshelf", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A shell with no PREPSHELF_* settings and its own home (the default data dir)."""
    env = base_env(HOME=str(home), **extra)
    env.pop("XDG_DATA_HOME", None)
    return env


class Serve:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "d"
        self.port = free_port()
        self.log = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "prepshelf", "serve", "--port", str(self.port)),
                    *("--data-dir", str(self.data_dir), "--workers", "1"),
                ],
                env=user_env(self.root / "home"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def readyz(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).json()
        return body

    def wait(self, ready: Any, timeout_s: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                body = self.readyz()
                if ready(body):
                    return body
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"serve not ready:\n{self.log.read_text()[-5000:]}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    server = Serve(tmp_path_factory.mktemp("first-hour"))
    server.start()
    try:
        server.wait(lambda b: b.get("live_workers", 0) >= 1 and b.get("live_sub_workers", 0) >= 5)
        yield server
    finally:
        server.stop()


def test_keys_never_creates_a_database_it_was_not_pointed_at(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    nowhere = run("keys", "list", env=user_env(home))
    assert nowhere.returncode == 2
    assert "no database in" in nowhere.stderr and "--data-dir" in nowhere.stderr
    assert not any(home.rglob("postgres")), "keys created a database under the home directory"
    empty = tmp_path / "empty"
    made = run("keys", "create", "--project", "x", "--data-dir", str(empty), env=user_env(home))
    assert made.returncode == 2 and f"no database in {empty}" in made.stderr
    assert not (empty / "postgres").exists()


def test_serve_says_where_it_listens_and_readyz_counts_processes(serve: Serve) -> None:
    server = json.loads((serve.data_dir / "server.json").read_text())
    assert server["url"] == f"http://127.0.0.1:{serve.port}"
    body = serve.readyz()
    assert body["live_workers"] == 1  # --workers 1: one worker process
    assert body["live_sub_workers"] == 5  # ingest, small-file ingest, batches, runs, maintenance
    assert "processes" in body["workers_counted"]
    assert body["query_model"]["status"] in ("loading", "ready")
    assert f"--data-dir {serve.data_dir}" in serve.log.read_text()


def test_client_commands_find_the_server_from_its_data_dir(serve: Serve, tmp_path: Path) -> None:
    home = tmp_path / "home"
    doc = tmp_path / "leave.md"
    doc.write_text("# Parental leave\n\nEmployees may take sixteen weeks of paid parental leave.\n")
    flag = ["--data-dir", str(serve.data_dir)]
    ingest = run("ingest", str(doc), "--store", "first", "--wait", *flag, env=user_env(home))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "1 completed, 0 failed of 1 file(s)" in ingest.stdout
    by_env = user_env(home, PREPSHELF_DATA_DIR=str(serve.data_dir))
    search = run("search", "first", "how long is parental leave", env=by_env)
    assert search.returncode == 0, search.stderr
    assert search.stdout.startswith("1. ") and "leave.md" in search.stdout
    jobs = run("jobs", env=by_env)
    assert jobs.returncode == 0 and "\tsucceeded\tindexing\t" in jobs.stdout, jobs.stdout


def test_keys_list_shows_the_generated_key(serve: Serve, tmp_path: Path) -> None:
    key = (serve.data_dir / "api_key").read_text().strip()
    listing = run("keys", "list", "--data-dir", str(serve.data_dir), env=user_env(tmp_path))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "(api_key file)" in line)
    assert "default" in row and "generated by serve" in row and key[:17] + "…" in row
    assert key not in listing.stdout  # never the whole secret


def test_after_serve_stops_the_clients_say_which_server_they_tried(
    serve: Serve, tmp_path: Path
) -> None:
    assert serve.stop() == 0
    assert not (serve.data_dir / "server.json").exists()
    gone = run("jobs", "--data-dir", str(serve.data_dir), env=user_env(tmp_path))
    assert gone.returncode == 1
    assert "cannot reach http://127.0.0.1:8000 (from the default; no " in gone.stderr
    assert str(serve.data_dir / "server.json") in gone.stderr and "--data-dir" in gone.stderr
