"""Segment transcripts → one text with time spans → chunks that say where in the recording
they are (start_s, end_s, segment, segment_end)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import tokenizers

from prepshelf.domain.upstreams import RateLimits, Upstream
from prepshelf.pipeline.chunk import ChunkingStrategy
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.media import CONTENT_TYPES, MediaOptions, iter_segments
from prepshelf.pipeline.tokenizer import load_tokenizer
from prepshelf.pipeline.transcript import (
    SegmentTranscript,
    TimedText,
    join_transcript,
    time_attributes,
    transcript_chunks,
)
from prepshelf.pipeline.upstream_client import AudioFile, UpstreamClient, UpstreamRequest
from support import fake_answers
from support.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def tok() -> tokenizers.Tokenizer:
    return load_tokenizer(default_model_dir())


def _verbose(*pieces: tuple[float, float, str]) -> dict[str, object]:
    return {
        "text": " ".join(t for _, _, t in pieces),
        "segments": [{"start": a, "end": b, "text": t} for a, b, t in pieces],
    }


def test_pieces_get_their_times_in_the_recording() -> None:
    first = SegmentTranscript.from_answer(
        0, 0.0, 300.0, _verbose((0.0, 4.5, " Good morning everyone."), (4.5, 9.0, " Let's start."))
    )
    second = SegmentTranscript.from_answer(
        1, 300.0, 452.0, _verbose((0.0, 6.0, "The budget first."), (6.0, 200.0, " Then hiring."))
    )
    text, spans = join_transcript([second, first])  # order comes from the segment index
    assert text == "Good morning everyone.\nLet's start.\nThe budget first.\nThen hiring."
    assert [(text[s.start : s.end], s.start_s, s.end_s, s.segment) for s in spans] == [
        ("Good morning everyone.", 0.0, 4.5, 1),
        ("Let's start.", 4.5, 9.0, 1),
        ("The budget first.", 300.0, 306.0, 2),
        ("Then hiring.", 306.0, 452.0, 2),  # clipped to the end of its segment
    ]


def test_a_segment_without_timed_pieces_is_one_piece() -> None:
    plain = SegmentTranscript.from_answer(2, 600.0, 900.0, {"text": "  All of it \n\n here. "})
    text, spans = join_transcript([plain])
    assert text == "All of it\n\nhere."
    assert [(s.start_s, s.end_s, s.segment) for s in spans] == [(600.0, 900.0, 3)]


def test_silent_pieces_and_segments_leave_no_span() -> None:
    segs = [
        SegmentTranscript.from_answer(0, 0.0, 10.0, _verbose((0.0, 5.0, "  "), (5.0, 10.0, "hi"))),
        SegmentTranscript.from_answer(1, 10.0, 20.0, {"text": ""}),
    ]
    text, spans = join_transcript(segs)
    assert text == "hi" and [(s.start_s, s.segment) for s in spans] == [(5.0, 1)]
    assert time_attributes((), 0, 2) is None


def test_a_chunk_spans_from_its_first_piece_to_its_last() -> None:
    seg = SegmentTranscript(
        0,
        0.0,
        30.0,
        "",
        (TimedText(0, 10, "aaaa"), TimedText(10, 20, "bbbb"), TimedText(20, 30, "cccc")),
    )
    text, spans = join_transcript([seg])
    assert text == "aaaa\nbbbb\ncccc"
    assert time_attributes(spans, 0, 4) == {
        "start_s": 0.0,
        "end_s": 10.0,
        "segment": 1,
        "segment_end": 1,
    }
    assert time_attributes(spans, 2, 7) == {
        "start_s": 0.0,
        "end_s": 20.0,
        "segment": 1,
        "segment_end": 1,
    }
    assert time_attributes(spans, 4, 14) == {
        "start_s": 10.0,
        "end_s": 30.0,
        "segment": 1,
        "segment_end": 1,
    }
    assert time_attributes(spans, 10, 14)["start_s"] == 20.0  # type: ignore[index]


def test_chunks_of_a_long_transcript_carry_consistent_times(tok: tokenizers.Tokenizer) -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    segments = []
    for index in range(6):  # six 5-minute segments, a sentence every 3 seconds
        pieces = tuple(
            TimedText(
                k * 3.0, k * 3.0 + 3.0, f"{words[(index + k) % 10]} minute {index} piece {k}."
            )
            for k in range(100)
        )
        segments.append(SegmentTranscript(index, index * 300.0, index * 300.0 + 300.0, "", pieces))
    chunks = transcript_chunks(segments, tok, ChunkingStrategy(max_tokens=120, overlap_tokens=20))
    assert len(chunks) > 20
    text, _ = join_transcript(segments)
    previous = -1.0
    for item in chunks:
        attrs = item.attributes
        assert text[item.chunk.char_start : item.chunk.char_end] == item.chunk.text
        assert 0.0 <= attrs["start_s"] < attrs["end_s"] <= 1800.0
        assert attrs["segment"] == int(attrs["start_s"] // 300) + 1
        assert attrs["segment"] <= attrs["segment_end"] <= 6
        # The chunk's own words say where it is: "minute i piece k" lies in [start_s, end_s).
        first = item.chunk.text.split(".")[0]
        if first.count(" ") == 4:  # a whole first sentence
            _, _, minute, _, piece = first.split(" ")
            at = int(minute) * 300 + int(piece) * 3
            assert attrs["start_s"] <= at < attrs["end_s"]
        assert attrs["start_s"] >= previous  # chunks come in recording order
        previous = attrs["start_s"]
    assert chunks[-1].attributes["end_s"] == 1800.0 and chunks[-1].attributes["segment_end"] == 6


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "meeting.webm"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=20.5:size=64x48:rate=5",
         "-f", "lavfi", "-i", "sine=frequency=330:duration=20.5", "-shortest",
         "-c:v", "libvpx", "-c:a", "libopus", str(path)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=["whisper"]) as server:
        yield server


def test_a_recording_segmented_transcribed_and_chunked(
    recording: Path, fake: FakeUpstream, tok: tokenizers.Tokenizer, tmp_path: Path
) -> None:
    """The building blocks in the order a transcription job uses them."""
    upstream = Upstream(
        "speech", fake.url, None, RateLimits(), timeout_s=30, retries=1,
        backoff_base_s=0.1, backoff_max_s=1, default_max_tokens=1,
    )  # fmt: skip
    options = MediaOptions(segment_s=10)
    transcripts: list[SegmentTranscript] = []
    expected: list[list[fake_answers.FakeSegment]] = []

    async def transcribe(client: UpstreamClient, path: Path, index: int) -> dict[str, object]:
        body = {"model": "whisper", "response_format": "verbose_json"}
        audio = AudioFile(path, f"segment-{index}.flac", CONTENT_TYPES["flac"])
        result = await client.call(
            UpstreamRequest("/v1/audio/transcriptions", body, "whisper", audio)
        )
        assert result.outcome == "ok", result.body
        return result.body

    async def run() -> None:
        client = UpstreamClient(upstream)
        try:
            for seg in iter_segments(recording, tmp_path, options):
                assert seg.path is not None
                expected.append(fake_answers.transcript_for(seg.path.read_bytes()))
                answer = await transcribe(client, seg.path, seg.index)
                transcripts.append(
                    SegmentTranscript.from_answer(seg.index, seg.start_s, seg.end_s, answer)
                )
        finally:
            await client.aclose()

    asyncio.run(run())
    assert [(t.start_s, t.end_s) for t in transcripts] == [
        (0.0, 10.0),
        (10.0, pytest.approx(20.5, abs=0.25)),  # the 0.5-s tail joined the segment before
    ]
    text, spans = join_transcript(transcripts)
    # The fake's words for each segment's audio bytes, at the fake's times plus the offset.
    assert [(s.start_s, text[s.start : s.end]) for s in spans] == [
        (seg_start + piece.start, piece.text)
        for seg_start, pieces in zip((0.0, 10.0), expected, strict=True)
        for piece in pieces
    ]
    chunks = transcript_chunks(transcripts, tok, ChunkingStrategy(max_tokens=16, overlap_tokens=0))
    assert chunks[0].attributes["start_s"] == 0.0 and chunks[0].attributes["segment"] == 1
    assert chunks[-1].attributes["segment_end"] == 2
    assert chunks[-1].attributes["end_s"] == pytest.approx(20.5, abs=0.25)
