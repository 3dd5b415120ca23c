"""Run `parse_file` in a separate, memory-capped, killable process.

Hostile files can make native parsers (PDFium, libxml2) hang, balloon or crash; a child process
contains all three. Children are started with the *spawn* method so the parent's threads and
libraries (torch, DB pools) are never forked, and they are kept warm between calls: one idle
child per concurrently calling thread at most, reused, and replaced after any failure.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import resource
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from prepshelf.errors import FileProcessingError, InvalidFileError, PrepshelfError
from prepshelf.pipeline.parse import ParsedDocument, parse_file

ParseTarget = Callable[[Path, str], ParsedDocument]

_STARTUP_TIMEOUT_S = 120.0  # importing the parsers in a fresh interpreter; not the file's fault
_CTX = multiprocessing.get_context("spawn")


def parse_in_subprocess(
    path: Path,
    filename: str,
    *,
    timeout_s: float,
    memory_limit_bytes: int,
    _target: ParseTarget = parse_file,
) -> ParsedDocument:
    """`parse_file(path, filename)` in a child capped at `memory_limit_bytes` of address space.

    Raises the child's FileProcessingError unchanged (same class and message), or
    InvalidFileError when the child runs past `timeout_s`, runs out of memory or crashes.
    `_target` (a picklable module-level function) replaces parse_file in tests. Thread-safe.
    """
    doc = run_in_subprocess(
        _target, path, filename, timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes
    )
    assert isinstance(doc, ParsedDocument)
    return doc


def run_in_subprocess(
    target: Callable[[Path, str], Any],
    path: Path,
    filename: str,
    *,
    timeout_s: float,
    memory_limit_bytes: int,
) -> Any:
    """`target(path, filename)` in the sandbox, same limits and errors as parse_in_subprocess.

    `target` must be picklable (a module-level function or a functools.partial of one); so
    must its result. Used for archive expansion.
    """
    worker = _checkout()
    try:
        return worker.run(target, path, filename, timeout_s, memory_limit_bytes)
    finally:
        _checkin(worker)


def shutdown_sandbox() -> None:
    """Stop the idle warm children; children busy right now stop when their call returns."""
    global _generation
    with _lock:
        _generation += 1
        idle, _idle[:] = list(_idle), []
    for worker in idle:
        worker.close()


class _Worker:
    """One child process and the pipe to it."""

    def __init__(self) -> None:
        self.generation = _generation
        self.reusable = False  # set after a clean round trip; anything else retires the child
        self.conn, child_conn = _CTX.Pipe()
        self.process: BaseProcess = _CTX.Process(
            target=_child_main, args=(child_conn,), name="prepshelf-parser", daemon=True
        )
        self.process.start()
        child_conn.close()
        if not self.conn.poll(_STARTUP_TIMEOUT_S):
            self.close()
            raise PrepshelfError("parser process did not start in time")
        try:
            self.conn.recv()  # "ready"
        except EOFError as exc:
            self.close()
            raise PrepshelfError(f"parser process failed to start ({self._exit()})") from exc

    def run(
        self,
        target: Callable[[Path, str], Any],
        path: Path,
        filename: str,
        timeout_s: float,
        limit: int,
    ) -> Any:
        self.reusable = False
        try:
            self.conn.send((target, path, filename, limit))
            if not self.conn.poll(timeout_s):
                self.close()
                raise InvalidFileError(f"parsing took longer than {timeout_s:.0f} s (limit)")
            status, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            why = self._exit()
            if "SIGABRT" in why:  # native code (PDFium) aborts when an allocation fails
                why += f"; likely out of memory (limit {limit // 2**20} MB)"
            raise InvalidFileError(f"parser process crashed ({why})") from exc
        if status == "oom":  # the heap may be fragmented or half-torn: do not reuse
            raise InvalidFileError(f"parser ran out of memory (limit {limit // 2**20} MB)")
        self.reusable = True
        if status == "ok":
            return payload
        assert isinstance(payload, FileProcessingError)
        raise payload

    def _exit(self) -> str:
        self.process.join(5)
        code = self.process.exitcode
        if code is None:
            self.close()
            return "exit code unknown"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by signal {signal.Signals(-code).name}"
        return f"exit code {code}"

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


_lock = threading.Lock()
_idle: list[_Worker] = []
_generation = 0


def _checkout() -> _Worker:
    with _lock:
        if _idle:
            return _idle.pop()
    return _Worker()  # started outside the lock so other threads are not held up


def _checkin(worker: _Worker) -> None:
    with _lock:
        if worker.reusable and worker.generation == _generation and worker.process.is_alive():
            _idle.append(worker)
            return
    worker.close()


atexit.register(shutdown_sandbox)


# --- child side -----------------------------------------------------------------------------


def _child_main(conn: Connection) -> None:
    """Serve parse requests until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        target, path, filename, limit = request
        reply = _serve(target, path, filename, limit)
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an exception that does not pickle
            conn.send(("error", InvalidFileError(f"parser failed: {type(exc).__name__}: {exc}")))


def _serve(target: ParseTarget, path: Path, filename: str, limit: int) -> tuple[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    capped = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (capped, hard))
    try:
        return ("ok", target(path, filename))
    except MemoryError:
        return ("oom", None)
    except FileProcessingError as exc:
        return ("error", exc)
    except Exception as exc:
        return ("error", InvalidFileError(f"parser failed: {type(exc).__name__}: {exc}"[:300]))
    finally:
        # Lift the cap again so replying (pickling a large text) cannot fail on it.
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
