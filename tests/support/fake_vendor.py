"""A fake OpenAI-compatible embeddings server on loopback, scripted per test.

Each request to POST /v1/embeddings takes the next step of the script (then `default`):
"ok", "timeout" (answer only after `hang_s`), "malformed" (one vector too few),
or an int HTTP status with optional headers, e.g. (429, {"Retry-After": "2"}).
Vectors are deterministic: a hash of each text, so the same text always gets the same vector.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

Step = str | int | tuple[int, dict[str, str]]


def vector_for(text: str, dims: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    v = np.random.default_rng(seed).standard_normal(dims)
    return [float(x) for x in v / np.linalg.norm(v)]


@dataclass
class Call:
    at: float  # time.monotonic() when the request arrived
    inputs: int
    answer: str


class FakeVendor:
    def __init__(self, dims: int = 8, *, hang_s: float = 3.0, delay_s: float = 0.0) -> None:
        self.dims, self.hang_s, self.delay_s = dims, hang_s, delay_s
        self.script: deque[Step] = deque()
        self.default: Step = "ok"
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                vendor._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeVendor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, *steps: Step, default: Step = "ok") -> None:
        with self._lock:
            self.script = deque(steps)
            self.default = default
            self.calls = []

    def _next(self) -> Step:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        body = json.loads(req.rfile.read(int(req.headers.get("content-length", 0))))
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        step = self._next()
        with self._lock:
            self.calls.append(Call(arrived, len(texts), str(step)))
        if step == "timeout":
            time.sleep(self.hang_s)
            step = "ok"
        if step in ("ok", "malformed"):
            if self.delay_s:
                time.sleep(self.delay_s)
            keep = texts[:-1] if step == "malformed" else texts
            data = [
                {"object": "embedding", "index": i, "embedding": vector_for(t, self.dims)}
                for i, t in enumerate(keep)
            ]
            self._send(req, 200, {"object": "list", "data": data, "model": body["model"]})
            return
        status, headers = step if isinstance(step, tuple) else (int(step), {})
        self._send(req, status, {"error": {"message": f"scripted {status}"}}, headers)

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        raw = json.dumps(payload).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                req.send_header(k, v)
            req.end_headers()
            req.wfile.write(raw)
        except OSError:
            pass  # the client gave up (timeout): nothing to answer
