"""Tools for attacking a running server in tests: raw HTTP over sockets, RSS sampling.

Raw sockets, because the attacks are about what a well-behaved client never does: headers
that promise a body that never comes, bodies cut off mid-way, bytes trickled one at a time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1024 * 1024


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(port: int, *, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.settimeout(timeout_s)
    return sock


def head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response(sock: socket.socket, *, timeout_s: float = 10.0) -> RawResponse:
    """Read one response (Content-Length framed); raises TimeoutError if none comes."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data[:200]!r}")
        data += chunk
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return RawResponse(int(status_line.split()[1]), headers, rest[:length])


def closed_by_peer(sock: socket.socket, *, timeout_s: float = 10.0) -> bool:
    """True once the server has closed its side (recv returns b"" or the line is reset)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def send_until_refused(sock: socket.socket, total: int, *, block: int = 256 * 1024) -> int:
    """Send up to `total` bytes; stop when the server shuts the line. Returns bytes sent."""
    payload = b"x" * block
    sent = 0
    sock.settimeout(10)
    try:
        while sent < total:
            sock.sendall(payload[: min(block, total - sent)])
            sent += min(block, total - sent)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


@dataclass
class RssSampler:
    """Samples a process's RSS in a thread; `peak_growth` is the most it rose above the start."""

    pid: int
    interval_s: float = 0.01
    start: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._proc = psutil.Process(self.pid)
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_growth(self) -> int:
        return self.peak - self.start


def part_files(blob_dir: Path) -> list[Path]:
    """Unfinished uploads (temporary `.part` files) anywhere under the blob directory."""
    return [p for p in blob_dir.rglob("*.part")] if blob_dir.exists() else []


def wait_until(
    check: Callable[[], bool], *, timeout_s: float = 10.0, interval_s: float = 0.1
) -> bool:
    """Poll `check` until it holds (True) or the safety timeout passes (its last answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()


@contextlib.contextmanager
def open_socket(port: int, *, timeout_s: float = 10.0) -> Iterator[socket.socket]:
    sock = connect(port, timeout_s=timeout_s)
    try:
        yield sock
    finally:
        sock.close()
