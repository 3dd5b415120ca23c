"""A fake OpenAI-compatible upstream on 127.0.0.1, scripted per test, with a request log.

Serves POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/audio/transcriptions
(multipart; response_format json, text, verbose_json, srt, vtt) and GET /v1/models, with the
deterministic answers of `fake_answers.py` and real `usage` counts. Streams (`stream: true`)
come as server-sent events.

Faults are scripted by `Rule`s: the first rule that matches a request (path, model, a
substring of the raw body) and has uses left applies to it. Fault kinds: `status` (any HTTP
status with headers, e.g. 429 with Retry-After), `hang` (answer only after `seconds`), `slow`
(the answer trickles in pieces `seconds` apart), `not_json`, `truncated_json`, `wrong_shape`
(valid JSON without the endpoint's fields), `short_embeddings` (one vector too few), `none`
(answer normally, but count the use and label the log).

Every request is logged (`records()`): arrival and finish times (time.monotonic() of the
server's process), status, tokens, the rule that applied. `max_in_flight()` and
`max_in_window()` measure what the fake itself saw.

In-process: `FakeUpstream(...).start()` runs uvicorn in a thread. As a process:
`python tests/support/fake_upstream.py [--models a,b] [--api-key K]` prints `URL <base url>`
and serves until SIGTERM; `FakeUpstreamProcess` drives it through `/_fake/*` control routes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import httpx
import uvicorn

if __package__ in (None, ""):  # run as a script: make `support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.fake_upstream_app import FAULT_KINDS, FakeState, Record, Rule, build_app

__all__ = [
    "FAULT_KINDS",
    "FakeUpstream",
    "FakeUpstreamProcess",
    "Record",
    "Rule",
    "max_in_flight",
    "max_in_window",
]


class FakeUpstream:
    def __init__(
        self, *, models: list[str] | None = None, api_key: str | None = None, dims: int = 8
    ) -> None:
        self._state = FakeState(models, api_key, dims)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            build_app(self._state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def delay_s(self) -> float:
        return self._state.delay_s

    @delay_s.setter
    def delay_s(self, value: float) -> None:
        self._state.delay_s = value

    def start(self) -> FakeUpstream:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- script and log ---------------------------------------------------------------

    def add(self, *rules: Rule) -> None:
        with self._state.lock:
            self._state.rules.extend(rules)

    def reset(self) -> None:
        """No rules, an empty log, no delay."""
        with self._state.lock:
            self._state.rules.clear()
            self._state.log.clear()
            self._state.delay_s = 0.0

    def records(self) -> list[Record]:
        with self._state.lock:
            return [Record(**asdict(r)) for r in self._state.log]


def max_in_flight(records: list[Record]) -> int:
    """The most requests the upstream was working on at one instant."""
    events = sorted(
        [(r.arrived, 1) for r in records] + [(r.finished or r.arrived, -1) for r in records],
        key=lambda e: (e[0], e[1]),  # at a tie, an end before a start
    )
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def max_in_window(records: list[Record], window_s: float = 60.0) -> tuple[int, int]:
    """The most requests, and the most tokens, that arrived within any `window_s` seconds
    (half-open windows [t, t + window_s) starting at each arrival)."""
    arrivals = sorted((r.arrived, r.tokens) for r in records)
    most_requests = most_tokens = 0
    end = 0
    tokens_in = 0
    for start_index, (start, _) in enumerate(arrivals):
        while end < len(arrivals) and arrivals[end][0] < start + window_s:
            tokens_in += arrivals[end][1]
            end += 1
        most_requests = max(most_requests, end - start_index)
        most_tokens = max(most_tokens, tokens_in)
        tokens_in -= arrivals[start_index][1]
    return most_requests, most_tokens


# --- as a separate process --------------------------------------------------------------


class FakeUpstreamProcess:
    """The fake in its own process (it survives what kills the test's workers)."""

    def __init__(self, *, models: list[str] | None = None, api_key: str | None = None) -> None:
        args = [sys.executable, str(Path(__file__).resolve())]
        if models is not None:
            args += ["--models", ",".join(models)]
        if api_key is not None:
            args += ["--api-key", api_key]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("URL "):
            self._proc.kill()
            raise RuntimeError(f"the fake upstream process did not start: {line!r}")
        self.url = line.removeprefix("URL ")
        self._control = httpx.Client(base_url=self.url.removesuffix("/v1"), timeout=30)

    def add(self, *rules: Rule) -> None:
        self._control.post("/_fake/rules", json=[asdict(r) for r in rules]).raise_for_status()

    def reset(self, *, delay_s: float = 0.0) -> None:
        self._control.post("/_fake/reset", json={"delay_s": delay_s}).raise_for_status()

    def records(self) -> list[Record]:
        rows = self._control.get("/_fake/log").json()
        return [Record(**{k: v for k, v in row.items() if k != "tokens"}) for row in rows]

    def stop(self) -> None:
        self._control.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _main() -> None:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible upstream")
    parser.add_argument("--models", help="comma-separated model names (default: any)")
    parser.add_argument("--api-key", help="require this bearer key")
    parser.add_argument("--dims", type=int, default=8)
    args = parser.parse_args()
    fake = FakeUpstream(
        models=args.models.split(",") if args.models else None, api_key=args.api_key, dims=args.dims
    ).start()
    print(f"URL {fake.url}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    fake.stop()


if __name__ == "__main__":
    _main()
