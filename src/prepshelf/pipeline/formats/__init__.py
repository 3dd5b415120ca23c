"""Format-specific text extractors; each returns raw (un-normalised) text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prepshelf.pipeline.ocr_run import OcrReport


@dataclass(frozen=True)
class PageText:
    """The raw text of one page (PDF page, image frame, slide), 1-based."""

    page: int
    text: str
    ocr: bool = False  # recognised from the page's pixels rather than read from a text layer
    confidence: float | None = None  # OCR mean word confidence 0..100; None for a text layer


@dataclass(frozen=True)
class Extracted:
    """Raw output of one format extractor, before whitespace normalisation."""

    text: str
    pages: int | None = None
    encoding: str | None = None
    # Message for InvalidFileError when `text` normalises to nothing; None = generic blank message.
    empty_reason: str | None = None
    # Paged formats give their pages instead of `text`, so chunks can say where they came from.
    page_texts: tuple[PageText, ...] | None = None
    ocr: OcrReport | None = None  # what OCR did, when any page went through it
