"""Format-specific text extractors; each returns raw (un-normalised) text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Extracted:
    """Raw output of one format extractor, before whitespace normalisation."""

    text: str
    pages: int | None = None
    encoding: str | None = None
    # Message for InvalidFileError when `text` normalises to nothing; None = generic blank message.
    empty_reason: str | None = None
