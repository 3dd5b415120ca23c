"""Where a chunk came from: the pages its characters lie on, and whether OCR read them.

A paged document's text is its pages' texts joined by a blank line; each page keeps its span
of characters. A chunk (an exact slice of the text) gets attributes from the spans it touches:
`page` and `page_end` (1-based, first and last), `ocr` (any of its text recognised by OCR)
and, when it is, `ocr_confidence` (the lowest mean word confidence of those pages, 0..100).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PageSpan:
    page: int  # 1-based
    start: int  # ParsedDocument.text[start:end] is the page's text
    end: int
    ocr: bool = False
    confidence: float | None = None  # OCR mean word confidence; None for a text layer


def chunk_attributes(spans: Sequence[PageSpan], start: int, end: int) -> dict[str, Any] | None:
    """Attributes of the chunk text[start:end]; None for documents without pages."""
    if not spans:
        return None
    starts = [s.start for s in spans]
    first = max(0, bisect.bisect_right(starts, start) - 1)
    if spans[first].end <= start and first + 1 < len(spans):
        first += 1  # the chunk starts in the blank line after a page
    last = max(first, bisect.bisect_left(starts, end) - 1)
    touched = spans[first : last + 1]
    attributes: dict[str, Any] = {
        "page": touched[0].page,
        "page_end": touched[-1].page,
        "ocr": any(s.ocr for s in touched),
    }
    confidences = [s.confidence for s in touched if s.ocr and s.confidence is not None]
    if confidences:
        attributes["ocr_confidence"] = round(min(confidences))
    return attributes
