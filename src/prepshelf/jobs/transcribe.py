"""The transcribing stage: a recording added to a store becomes text through an upstream
`/v1/audio/transcriptions` model, segment by segment.

ffprobe reads the recording and ffmpeg cuts its audio into segments (pipeline/media.py); each
segment is sent on its own and its answer kept the moment it arrives (store/transcripts.py),
so a job resumed after a kill starts at its first segment without an answer. Progress counts
segments. An upstream that refuses a segment fails the file with the upstream's reason; one
that stays unavailable (or whose shared limits are far off) puts the job back on the shelf.
Without a transcription model configured, a media file fails with the parse stage's message.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prepshelf.domain.upstreams import Endpoint
from prepshelf.errors import InvalidFileError, TransientError
from prepshelf.jobs.resources import WorkerResources
from prepshelf.jobs.upstreams import UpstreamClients
from prepshelf.pipeline.media import (
    CONTENT_TYPES,
    AudioSegment,
    MediaOptions,
    extract_segment,
    plan_segments,
    probe,
)
from prepshelf.pipeline.transcript import SegmentTranscript
from prepshelf.pipeline.upstream_client import AudioFile
from prepshelf.settings import Settings
from prepshelf.store import job_progress
from prepshelf.store import transcripts as transcripts_db
from prepshelf.store.transcripts import SegmentAnswer

ENDPOINT: Endpoint = "/v1/audio/transcriptions"


class TranscriptionCancelled(Exception):
    """The job was asked to cancel between two segments."""


class TranscriptionPaused(TransientError):
    """The upstream is unavailable or its limits are far off: come back later."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def transcription_model(settings: Settings, clients: UpstreamClients | None) -> str | None:
    """PREPSHELF_TRANSCRIPTION_MODEL, else the first configured model that transcribes."""
    if clients is None:
        return None
    served = [m.id for m in clients.config.models_for(ENDPOINT)]
    if settings.transcription_model is not None:
        return settings.transcription_model if settings.transcription_model in served else None
    return served[0] if served else None


def media_options(settings: Settings) -> MediaOptions:
    return MediaOptions(
        segment_s=settings.media_segment_s,
        max_duration_s=settings.media_max_duration_s,
        segment_format=settings.media_segment_format,
        timeout_s=settings.media_timeout_s,
        memory_limit_bytes=settings.media_memory_limit_mb * 1024 * 1024,
    )


async def transcribe(
    res: WorkerResources, job_id: str, path: Path, model: str
) -> list[SegmentTranscript]:
    """Every segment's transcript, in order (answers kept earlier are not asked again)."""
    assert res.upstreams is not None
    options = media_options(res.settings)
    info = await asyncio.to_thread(probe, path, options)
    planned = plan_segments(info.duration_s, options.segment_s)
    async with res.pool.connection() as conn:
        kept = {k.segment: k for k in await transcripts_db.kept_segments(conn, job_id=job_id)}
        await job_progress.set_stage(
            conn,
            job_id=job_id,
            stage="transcribing",
            progress_done=len(kept),
            progress_total=len(planned),
            progress_unit="segments",
        )
    work_dir = res.settings.data_dir / "tmp" / "media" / job_id
    try:
        for segment in planned:
            if segment.index in kept:
                continue
            answer = await _transcribe_segment(res, path, segment, work_dir, options, model)
            kept[segment.index] = SegmentAnswer(
                segment.index, segment.start_s, segment.end_s, answer
            )
            async with res.pool.connection() as conn, conn.transaction():
                await transcripts_db.keep_segment(conn, job_id=job_id, kept=kept[segment.index])
                cancel = await job_progress.set_progress(conn, job_id=job_id, done=len(kept))
            if cancel:
                raise TranscriptionCancelled(job_id)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return [
        SegmentTranscript.from_answer(k.segment, k.start_s, k.end_s, k.answer)
        for k in sorted(kept.values(), key=lambda k: k.segment)
    ]


async def _transcribe_segment(
    res: WorkerResources,
    path: Path,
    segment: AudioSegment,
    work_dir: Path,
    options: MediaOptions,
    model: str,
) -> dict[str, Any]:
    assert res.upstreams is not None
    extracted = await asyncio.to_thread(extract_segment, path, segment, work_dir, options)
    assert extracted.path is not None
    where = f"segment {segment.index + 1} of {segment.count}"
    try:
        client, request = res.upstreams.prepare(
            model,
            ENDPOINT,
            {"response_format": "verbose_json"},
            audio=AudioFile(
                extracted.path,
                f"segment-{segment.index + 1:05d}.{options.segment_format}",
                CONTENT_TYPES[options.segment_format],
            ),
        )
        result = await client.call(request, max_wait_s=res.settings.upstream_max_wait_s)
    finally:
        extracted.path.unlink(missing_ok=True)
    if result.outcome == "ok":
        return result.body
    reason = _message(result.body)
    if result.outcome == "failed":
        raise InvalidFileError(f"{where}: the transcription model `{model}` refused it: {reason}")
    raise TranscriptionPaused(f"{where}: {reason}", result.retry_after_s)


def _message(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    message = error.get("message") if isinstance(error, Mapping) else None
    return str(message or "no answer")
