"""One file's OCR: its pages through Tesseract under the file's limits, with progress per page.

Limits (settings `PREPSHELF_OCR_*`, named in every failure): pages per file, pixels and side
length per page, time per page and per file. Pages whose mean word confidence is below
`min_confidence` are not returned (their text would be indexed garbage) but listed in the
report, which the ingest job stores as the file's result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from prepshelf.errors import InvalidFileError
from prepshelf.pipeline.formats import PageText
from prepshelf.pipeline.ocr import MAX_SIDE, OcrOptions, OcrTimeout, load_engine, recognize

ProgressCallback = Callable[[int, int], None]  # (pages done, pages to OCR)

# Kept in a file's result at most; counts stay exact beyond it.
_MAX_LISTED = 200


@dataclass(frozen=True)
class OcrContext:
    """What an extractor needs to OCR: the file's options and where progress goes."""

    options: OcrOptions
    progress: ProgressCallback | None = None


@dataclass(frozen=True)
class OcrReport:
    """What OCR did to one file; `as_result()` is its JSON in the job's `result.ocr`."""

    languages: str
    pages: tuple[int, ...]  # pages recognised, in order
    mean_confidence: float | None  # over pages with words
    min_confidence: float  # the threshold pages were held to
    low_confidence: tuple[tuple[int, float, int], ...]  # (page, confidence, words): not indexed
    rotated: tuple[tuple[int, int], ...]  # (page, degrees turned counter-clockwise)
    unreadable: tuple[tuple[int, str], ...]  # (page, reason): could not be decoded
    orientation_detection: bool

    def as_result(self) -> dict[str, Any]:
        return {
            "languages": self.languages,
            "pages": len(self.pages),
            "page_numbers": list(self.pages[:_MAX_LISTED]),
            "mean_confidence": (
                None if self.mean_confidence is None else round(self.mean_confidence, 1)
            ),
            "min_confidence": self.min_confidence,
            "low_confidence_pages": [
                {"page": p, "confidence": round(c, 1), "words": w}
                for p, c, w in self.low_confidence[:_MAX_LISTED]
            ],
            "rotated_pages": [{"page": p, "degrees": d} for p, d in self.rotated[:_MAX_LISTED]],
            "unreadable_pages": [
                {"page": p, "reason": r} for p, r in self.unreadable[:_MAX_LISTED]
            ],
            "orientation_detection": self.orientation_detection,
        }


def check_page_size(page: int, width: int, height: int, options: OcrOptions) -> None:
    """Refuse a page before its pixels are decoded (pixel bombs stay a few bytes of header)."""
    pixels = width * height
    if pixels > options.max_page_pixels:
        raise InvalidFileError(
            f"page {page} is {width:,} × {height:,} pixels ({pixels / 1e6:,.1f} megapixels), "
            f"more than the OCR limit of {options.max_page_pixels / 1e6:,.1f} megapixels per "
            "page (PREPSHELF_OCR_MAX_PAGE_PIXELS)"
        )
    if max(width, height) > MAX_SIDE or min(width, height) < 1:
        raise InvalidFileError(
            f"page {page} is {width:,} × {height:,} pixels; Tesseract reads sides of 1 to "
            f"{MAX_SIDE:,} pixels"
        )


def check_page_count(count: int, options: OcrOptions, *, at_least: bool = False) -> None:
    if count > options.max_pages:
        more = "more than " if at_least else ""
        raise InvalidFileError(
            f"{more}{count - int(at_least):,} pages need OCR; the limit is "
            f"{options.max_pages:,} per file (PREPSHELF_OCR_MAX_PAGES)"
        )


@dataclass
class OcrRun:
    """OCR one file's pages in order; call `read` per page, then `report`."""

    ctx: OcrContext
    total: int
    started: float = field(default_factory=time.monotonic)
    _done: int = 0
    _recognised: list[int] = field(default_factory=list)
    _confidences: list[float] = field(default_factory=list)
    _low: list[tuple[int, float, int]] = field(default_factory=list)
    _rotated: list[tuple[int, int]] = field(default_factory=list)
    _unreadable: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_page_count(self.total, self.ctx.options)
        self.engine = load_engine(self.ctx.options)
        self._report_progress()

    def read(self, page: int, image: Image.Image, dpi: int | None) -> PageText | None:
        """The page's text, or None when OCR found none worth indexing (see `report`)."""
        options = self.ctx.options
        elapsed = time.monotonic() - self.started
        left = options.timeout_s - elapsed
        if left <= 0:
            raise self._out_of_time(elapsed)
        budget = min(options.page_timeout_s, left)
        try:
            result = recognize(image, self.engine, dpi=dpi, timeout_s=budget)
        except OcrTimeout:
            if budget < options.page_timeout_s:
                raise self._out_of_time(time.monotonic() - self.started) from None
            raise InvalidFileError(
                f"OCR of page {page} took longer than {options.page_timeout_s:g} s "
                "(PREPSHELF_OCR_PAGE_TIMEOUT_S)"
            ) from None
        self._recognised.append(page)
        if result.rotation:
            self._rotated.append((page, result.rotation))
        self._step()
        if result.confidence is None:
            return None
        self._confidences.append(result.confidence)
        if result.confidence < options.min_confidence:
            self._low.append((page, result.confidence, result.words))
            return None
        return PageText(page, result.text, ocr=True, confidence=round(result.confidence, 1))

    def unreadable(self, page: int, reason: str) -> None:
        """A page that could not be decoded: counted, reported, skipped."""
        self._unreadable.append((page, reason[:200]))
        self._step()

    def report(self) -> OcrReport:
        confidences = self._confidences
        return OcrReport(
            languages=self.engine.lang,
            pages=tuple(self._recognised),
            mean_confidence=sum(confidences) / len(confidences) if confidences else None,
            min_confidence=self.ctx.options.min_confidence,
            low_confidence=tuple(self._low),
            rotated=tuple(self._rotated),
            unreadable=tuple(self._unreadable),
            orientation_detection=self.engine.osd,
        )

    def empty_reason(self) -> str:
        """Why the file has no text although OCR ran (InvalidFileError's message)."""
        if self._low:
            worst = ", ".join(f"page {p}: {c:.0f}" for p, c, _ in self._low[:5])
            return (
                f"no text found by OCR above the confidence threshold of "
                f"{self.ctx.options.min_confidence:g} (PREPSHELF_OCR_MIN_CONFIDENCE; {worst})"
            )
        if self._unreadable and not self._recognised:
            page, reason = self._unreadable[0]
            return f"no page could be decoded (page {page}: {reason})"
        return f"no text found by OCR ({self._done} page(s) OCR'd with {self.engine.lang})"

    def _step(self) -> None:
        self._done += 1
        self._report_progress()

    def _report_progress(self) -> None:
        if self.ctx.progress is not None:
            self.ctx.progress(self._done, self.total)

    def _out_of_time(self, elapsed: float) -> InvalidFileError:
        return InvalidFileError(
            f"OCR stopped after {self._done} of {self.total} pages: {elapsed:.0f} s reached the "
            f"OCR time limit of {self.ctx.options.timeout_s:g} s per file (PREPSHELF_OCR_TIMEOUT_S)"
        )
