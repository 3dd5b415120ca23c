"""Run `parse_file` in a separate, memory-capped, killable process.

Hostile files can make native parsers (PDFium, libxml2, Tesseract) hang, balloon or crash; a
child process contains all three. Children are started with the *spawn* method so the parent's
threads and libraries (torch, DB pools) are never forked, and they are kept warm between calls:
one idle child per concurrently calling thread at most, reused, and replaced after any failure.
A child may report progress (pages OCR'd) before its answer; it reaches the caller's callback.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import resource
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from prepshelf.errors import FileProcessingError, InvalidFileError, PrepshelfError
from prepshelf.pipeline.ocr import OcrOptions
from prepshelf.pipeline.ocr_run import ProgressCallback
from prepshelf.pipeline.parse import ParsedDocument, parse_file
from prepshelf.pipeline.sniff import sniff_file

ParseTarget = Callable[..., ParsedDocument]  # (path, filename, *, ocr=, progress=)

# Plain-text kinds are read by pure-Python code (charset detection, decoding, normalising):
# below a small size they cannot hang, balloon or crash a process, and the round trip to a
# child costs more than reading them (a one-paragraph file: ~2 ms against ~0.2 ms).
INLINE_KINDS = frozenset({"text", "markdown", "csv", "json"})
_STARTUP_TIMEOUT_S = 120.0  # importing the parsers in a fresh interpreter; not the file's fault
_CTX = multiprocessing.get_context("spawn")


def parse_in_subprocess(
    path: Path,
    filename: str,
    *,
    timeout_s: float,
    memory_limit_bytes: int,
    ocr: OcrOptions | None = None,
    on_progress: ProgressCallback | None = None,
    _target: ParseTarget = parse_file,
) -> ParsedDocument:
    """`parse_file(path, filename, ocr=ocr)` in a child capped at `memory_limit_bytes` of
    address space.

    Raises the child's FileProcessingError unchanged (same class and message), or
    InvalidFileError when the child runs past `timeout_s`, runs out of memory or crashes.
    `on_progress(done, total)` is called in this thread for each page the child OCRs; an
    exception it raises (e.g. the job was cancelled) stops the child and is raised here.
    `_target` (a picklable module-level function) replaces parse_file in tests. Thread-safe.
    """
    target: Callable[..., Any] = _target if ocr is None else partial(_target, ocr=ocr)
    doc = run_in_subprocess(
        target,
        path,
        filename,
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
        on_progress=on_progress,
    )
    assert isinstance(doc, ParsedDocument)
    return doc


def parse_contained(
    path: Path,
    filename: str,
    *,
    inline_max_bytes: int,
    timeout_s: float,
    memory_limit_bytes: int,
    ocr: OcrOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> ParsedDocument:
    """`parse_file` in this thread for a plain-text file of at most `inline_max_bytes`
    (0: never), in the sandbox (`parse_in_subprocess`) for everything else."""
    if (
        inline_max_bytes > 0
        and path.stat().st_size <= inline_max_bytes
        and sniff_file(path, filename) in INLINE_KINDS
    ):
        return parse_file(path, filename)
    return parse_in_subprocess(
        path,
        filename,
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
        ocr=ocr,
        on_progress=on_progress,
    )


def run_in_subprocess(
    target: Callable[..., Any],
    path: Path,
    filename: str,
    *,
    timeout_s: float,
    memory_limit_bytes: int,
    on_progress: ProgressCallback | None = None,
) -> Any:
    """`target(path, filename)` in the sandbox, same limits and errors as parse_in_subprocess.

    `target` must be picklable (a module-level function or a functools.partial of one); so
    must its result. With `on_progress`, the target is also given `progress=` (a function
    the child calls with (done, total)). Used for archive expansion.
    """
    worker = _checkout()
    try:
        return worker.run(target, path, filename, timeout_s, memory_limit_bytes, on_progress)
    except _CallerStopped as stopped:
        raise stopped.cause from None
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


class _CallerStopped(Exception):
    """on_progress raised: the child was stopped; the original exception is re-raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


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
        target: Callable[..., Any],
        path: Path,
        filename: str,
        timeout_s: float,
        limit: int,
        on_progress: ProgressCallback | None,
    ) -> Any:
        self.reusable = False
        deadline = time.monotonic() + timeout_s
        try:
            self.conn.send((target, path, filename, limit, on_progress is not None))
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self.conn.poll(left):
                    self.close()
                    raise InvalidFileError(f"parsing took longer than {timeout_s:.0f} s (limit)")
                status, payload = self.conn.recv()
                if status != "progress":
                    break
                if on_progress is not None:
                    self._relay(on_progress, payload)
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

    def _relay(self, on_progress: ProgressCallback, payload: tuple[int, int]) -> None:
        """Hand progress to the caller; if it raises (cancelled), the child's work stops."""
        try:
            on_progress(*payload)
        except BaseException as exc:
            self.close()
            raise _CallerStopped(exc) from exc

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
        target, path, filename, limit, wants_progress = request
        report = partial(_send_progress, conn) if wants_progress else None
        reply = _serve(target, path, filename, limit, report)
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an exception that does not pickle
            conn.send(("error", InvalidFileError(f"parser failed: {type(exc).__name__}: {exc}")))


def _send_progress(conn: Connection, done: int, total: int) -> None:
    conn.send(("progress", (done, total)))


def _serve(
    target: Callable[..., Any],
    path: Path,
    filename: str,
    limit: int,
    report: ProgressCallback | None,
) -> tuple[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    capped = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (capped, hard))
    try:
        if report is None:
            return ("ok", target(path, filename))
        return ("ok", target(path, filename, progress=report))
    except MemoryError:
        return ("oom", None)
    except FileProcessingError as exc:
        return ("error", exc)
    except Exception as exc:
        return ("error", InvalidFileError(f"parser failed: {type(exc).__name__}: {exc}"[:300]))
    finally:
        # Lift the cap again so replying (pickling a large text) cannot fail on it.
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
