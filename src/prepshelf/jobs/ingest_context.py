"""What an ingest job reads about its store file before it starts (archives read it too)."""

from __future__ import annotations

from dataclasses import dataclass

from prepshelf.domain.jobs import IngestJob
from prepshelf.jobs.ocr import requested_languages
from prepshelf.jobs.resources import WorkerResources
from prepshelf.store import vector_stores as vector_stores_db
from prepshelf.store.vector_stores import IngestSource


@dataclass(frozen=True)
class IngestContext:
    """The job's store file as loaded at the start, and the OCR languages it asks for."""

    source: IngestSource
    ocr_languages: str | None


async def load_context(res: WorkerResources, job: IngestJob) -> IngestContext | None:
    """None once the file has left the store."""
    async with res.pool.connection() as conn:
        source = await vector_stores_db.get_ingest_source(
            conn, store_id=job.vector_store_id, file_id=job.file_id, job_id=job.id
        )
    if source is None:
        return None
    languages = requested_languages(res.settings, source.attributes, source.metadata)
    return IngestContext(source=source, ocr_languages=languages)
