"""OCR for the ingest job: the file's options, and its progress carried to the job row.

Languages: a file's attribute `ocr_languages` wins over its store's metadata key of the same
name, which wins over `PREPSHELF_OCR_LANGUAGES` (unset: every installed language). The worker
checks them only when a page needs OCR, so a text PDF never fails on them.

Progress: the parse sandbox calls `OcrProgress.update` (in the parse thread) for every OCR'd
page; a task on the worker's loop writes the latest count to the job at most every
`interval_s` (the jobs trigger turns each write into an event: SSE, CLI bars, /ui). A cancel
request seen by a write, or the worker shutting down, makes the next update raise
OcrCancelled, which stops the sandbox child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from prepshelf.jobs.ingest_attempt import IngestAttempt
from prepshelf.pipeline.ocr import OcrOptions
from prepshelf.settings import Settings
from prepshelf.store import job_progress
from prepshelf.store.db import Pool

log = logging.getLogger(__name__)

LANGUAGES_KEY = "ocr_languages"


class OcrCancelled(Exception):
    """The job was cancelled while its pages were being OCR'd."""


def requested_languages(
    settings: Settings, attributes: dict[str, Any] | None, metadata: dict[str, Any] | None
) -> str | None:
    """The languages asked for (file attribute > store metadata > setting); None = default."""
    for source in (attributes or {}, metadata or {}):
        value = source.get(LANGUAGES_KEY)
        if value is not None and str(value).strip():
            return str(value).strip()
    return settings.ocr_languages


def ocr_options(settings: Settings, languages: str | None) -> OcrOptions:
    return OcrOptions(
        enabled=settings.ocr_enabled,
        languages=languages,
        tessdata_dir=settings.ocr_tessdata_dir,
        dpi=settings.ocr_dpi,
        max_page_pixels=settings.ocr_max_page_pixels,
        max_pages=settings.ocr_max_pages,
        page_timeout_s=settings.ocr_page_timeout_s,
        timeout_s=settings.ocr_timeout_s,
        min_confidence=settings.ocr_min_confidence,
        page_min_chars=settings.ocr_page_min_chars,
    )


class OcrProgress:
    """The latest (done, total) from the parse thread, written to the job by the loop."""

    def __init__(self, pool: Pool, attempt: IngestAttempt, *, interval_s: float = 0.5) -> None:
        self.pool, self.attempt, self.interval_s = pool, attempt, interval_s
        self._lock = threading.Lock()
        self._latest: tuple[int, int] | None = None
        self._written: tuple[int, int] | None = None
        self._cancelled = False

    def update(self, done: int, total: int) -> None:
        """Called by the sandbox in the parse thread."""
        if self._cancelled:
            raise OcrCancelled("cancel requested")
        with self._lock:
            self._latest = (done, total)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Write progress while the body runs, and the last count when it ends (also on
        failure, so the job shows where OCR stopped)."""
        writer = asyncio.create_task(self._write_every_interval())
        try:
            yield
        except BaseException:
            # The wait ended early (the worker is shutting down): the parse thread cannot be
            # cancelled, so its OCR stops at the next page, and the process can exit.
            self._cancelled = True
            raise
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            # Best effort: a lost database fails the job's next step with its own error.
            with contextlib.suppress(psycopg.OperationalError):
                await self._write()

    async def _write_every_interval(self) -> None:
        while True:
            try:
                await self._write()
            except psycopg.OperationalError as exc:  # progress is not worth failing the OCR
                log.warning("job %s: OCR progress not written: %s", self.attempt.job.id, exc)
            await asyncio.sleep(self.interval_s)

    async def _write(self) -> None:
        with self._lock:
            latest = self._latest
        if latest is None or latest == self._written:
            return
        done, total = latest
        job_id = self.attempt.job.id
        if self._written is None:  # the first page report: the job enters its OCR stage
            clock = self.attempt.clock
            await clock.enter(
                "ocr", progress_done=done, progress_total=total, progress_unit="pages"
            )
            await clock.flush()  # pages take seconds each: shown at once
        async with self.pool.connection() as conn:
            if self._written is None:
                cancelled = await job_progress.is_cancel_requested(conn, job_id=job_id)
            else:
                cancelled = await job_progress.set_progress(conn, job_id=job_id, done=done)
        self._written = latest
        self._cancelled = self._cancelled or cancelled
