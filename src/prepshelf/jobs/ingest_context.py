"""What an ingest job reads about its store file before it starts (archives read it too)."""

from __future__ import annotations

from dataclasses import dataclass

from prepshelf.jobs.ocr import requested_languages
from prepshelf.jobs.resources import WorkerResources
from prepshelf.store.vector_stores import IngestSource


@dataclass(frozen=True)
class IngestContext:
    """The job's store file as loaded at the start, and the OCR languages it asks for."""

    source: IngestSource
    ocr_languages: str | None


def ingest_context(res: WorkerResources, source: IngestSource) -> IngestContext:
    languages = requested_languages(res.settings, source.attributes, source.metadata)
    return IngestContext(source=source, ocr_languages=languages)
