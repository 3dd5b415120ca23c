"""A recording's transcript as one text with time spans, and its chunks with where they are.

A recording is transcribed segment by segment (media.py). Each segment's answer gives its
text and, from `verbose_json`, the upstream's own timed pieces (times relative to the segment).
`join_transcript` makes one text of them, a piece per line, and keeps each piece's span of
characters with its start and end in the recording, as pages.py does for pages. A chunk (an
exact slice of that text) gets attributes from the spans it touches:

    start_s, end_s          seconds into the recording (2 decimals) of its first and last piece
    segment, segment_end    1-based numbers of the media segments they came from

so a search hit says where in the recording it is (`start_s` 754.2 = 12:34.2), and
`start_s`/`end_s` can be filtered on (`{"type": "gte", "key": "start_s", "value": 600}`).
Without timed pieces (a plain `json` answer) a segment is one piece spanning it whole.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tokenizers

from prepshelf.pipeline.chunk import Chunk, ChunkingStrategy, chunk_text
from prepshelf.pipeline.parse import normalise_text

_PIECE_SEPARATOR = "\n"


@dataclass(frozen=True)
class TimedText:
    start_s: float  # relative to the start of its media segment
    end_s: float
    text: str


@dataclass(frozen=True)
class SegmentTranscript:
    index: int  # 0-based media segment
    start_s: float  # where the media segment lies in the recording
    end_s: float
    text: str
    pieces: tuple[TimedText, ...] = ()  # the upstream's timed pieces, when it gave them

    @classmethod
    def from_answer(
        cls, index: int, start_s: float, end_s: float, answer: Mapping[str, Any]
    ) -> SegmentTranscript:
        """From a transcription answer (`json` or `verbose_json`, already checked by the
        upstream client): its `text` and, when present, its `segments`."""
        pieces = tuple(
            TimedText(float(s["start"]), float(s["end"]), str(s["text"]))
            for s in answer.get("segments") or ()
            if isinstance(s, Mapping)
        )
        return cls(index, start_s, end_s, str(answer.get("text") or ""), pieces)


@dataclass(frozen=True)
class TimeSpan:
    start: int  # the joined text's [start:end] is this piece
    end: int
    start_s: float  # in the recording
    end_s: float
    segment: int  # 1-based media segment


@dataclass(frozen=True)
class TranscriptChunk:
    chunk: Chunk
    attributes: dict[str, Any]


def join_transcript(segments: Sequence[SegmentTranscript]) -> tuple[str, tuple[TimeSpan, ...]]:
    """The transcript as one normalised text, a piece per line, and each piece's span; pieces
    with no text after normalisation are left out."""
    parts: list[str] = []
    spans: list[TimeSpan] = []
    position = 0
    for seg in sorted(segments, key=lambda s: s.index):
        pieces = seg.pieces or (TimedText(0.0, seg.end_s - seg.start_s, seg.text),)
        for piece in pieces:
            text = normalise_text(piece.text)
            if not text:
                continue
            if parts:
                parts.append(_PIECE_SEPARATOR)
                position += len(_PIECE_SEPARATOR)
            start_s = _clip(seg.start_s + piece.start_s, seg.start_s, seg.end_s)
            end_s = _clip(seg.start_s + piece.end_s, start_s, seg.end_s)
            parts.append(text)
            spans.append(TimeSpan(position, position + len(text), start_s, end_s, seg.index + 1))
            position += len(text)
    return "".join(parts), tuple(spans)


def time_attributes(spans: Sequence[TimeSpan], start: int, end: int) -> dict[str, Any] | None:
    """Attributes of the chunk text[start:end] (see the module's docstring); None without
    spans."""
    if not spans:
        return None
    starts = [s.start for s in spans]
    first = max(0, bisect.bisect_right(starts, start) - 1)
    if spans[first].end <= start and first + 1 < len(spans):
        first += 1  # the chunk starts in the separator after a piece
    last = max(first, bisect.bisect_left(starts, end) - 1)
    touched = spans[first : last + 1]
    return {
        "start_s": round(touched[0].start_s, 2),
        "end_s": round(max(s.end_s for s in touched), 2),
        "segment": touched[0].segment,
        "segment_end": touched[-1].segment,
    }


def transcript_chunks(
    segments: Sequence[SegmentTranscript],
    tokenizer: tokenizers.Tokenizer,
    strategy: ChunkingStrategy,
) -> list[TranscriptChunk]:
    """The transcript chunked like any document (`chunk_text`), each chunk with its times."""
    text, spans = join_transcript(segments)
    return [
        TranscriptChunk(c, time_attributes(spans, c.char_start, c.char_end) or {})
        for c in chunk_text(text, tokenizer, strategy)
    ]


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
