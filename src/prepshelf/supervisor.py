"""`prepshelf serve`: run the API and N worker processes, restart workers that die.

Each role is a separate OS process started as `python -m prepshelf <role>`; the supervisor
only starts, watches and stops them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class _Child:
    role: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "prepshelf", *self.args], env=env)
        log.info("started %s (pid %d)", self.role, self.proc.pid)


class Supervisor:
    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.env = env
        self.api = _Child("api", ["api"])
        self.workers = [_Child(f"worker-{i + 1}", ["worker"]) for i in range(workers)]
        self._stopping = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            log.info("received %s: stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.api.start(self.env)
        for worker in self.workers:
            worker.start(self.env)
        code = 0
        while not self._stopping:
            time.sleep(0.2)
            assert self.api.proc is not None
            if self.api.proc.poll() is not None:
                log.error("the API process exited with %s; stopping", self.api.proc.returncode)
                code = 1
                break
            for worker in self.workers:
                assert worker.proc is not None
                if worker.proc.poll() is not None and not self._stopping:
                    self._restart(worker)
        self._stop_all()
        return code

    def _restart(self, worker: _Child) -> None:
        assert worker.proc is not None
        now = time.monotonic()
        worker.restarts = [t for t in worker.restarts if now - t < 60] + [now]
        # Back off when a worker keeps dying, so a broken setup does not spin the CPU.
        delay = min(30.0, 0.5 * 2 ** (len(worker.restarts) - 1))
        log.warning(
            "%s exited with %s; restarting in %.1f s", worker.role, worker.proc.returncode, delay
        )
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self._stopping:
            time.sleep(0.1)
        if not self._stopping:
            worker.start(self.env)

    def _stop_all(self, timeout_s: float = 20.0) -> None:
        children = [c for c in (*self.workers, self.api) if c.proc and c.proc.poll() is None]
        for child in children:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in children:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.role)
                child.proc.kill()
                child.proc.wait()
        log.info("all processes stopped")


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env
