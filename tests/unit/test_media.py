"""Audio and video: sniffed by content, probed and cut into transcription segments by
ffprobe/ffmpeg under limits, with precise errors. Media is generated here by ffmpeg itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from prepshelf.errors import InvalidFileError, UnsupportedFileError
from prepshelf.pipeline.media import (
    MediaOptions,
    MediaToolMissingError,
    extract_segment,
    iter_segments,
    plan_segments,
    probe,
)
from prepshelf.pipeline.parse import MediaFileError, parse_file
from prepshelf.pipeline.sniff import sniff_file

SINE = ["-f", "lavfi", "-i", "sine=frequency=440:duration={d}"]
PICTURE = ["-f", "lavfi", "-i", "testsrc=duration={d}:size=64x48:rate=10"]


def _ffmpeg(out: Path, *args: str, seconds: float = 12) -> Path:
    filled = [a.format(d=seconds) for a in args]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *filled, str(out)], check=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of each kind, named so that the extension says nothing true."""
    d = tmp_path_factory.mktemp("media")
    audio_video = [*PICTURE, *SINE, "-shortest"]
    return {
        "mp3": _ffmpeg(d / "a.txt", *SINE, "-c:a", "libmp3lame", "-f", "mp3"),
        "mp3-bare": _ffmpeg(
            d / "b.pdf",
            *SINE,
            "-c:a",
            "libmp3lame",
            "-id3v2_version",
            "0",
            "-write_xing",
            "0",
            "-f",
            "mp3",
        ),
        "wav": _ffmpeg(d / "c.doc", *SINE, "-f", "wav"),
        "m4a": _ffmpeg(d / "d.bin", *SINE, "-c:a", "aac", "-f", "ipod"),
        "ogg": _ffmpeg(d / "e", *SINE, "-c:a", "libopus", "-f", "ogg"),
        "flac": _ffmpeg(d / "f.md", *SINE, "-f", "flac"),
        "mp4": _ffmpeg(d / "g.csv", *audio_video, "-c:v", "libx264", "-c:a", "aac", "-f", "mp4"),
        "mov": _ffmpeg(d / "h.json", *audio_video, "-c:v", "mpeg4", "-c:a", "aac", "-f", "mov"),
        "webm": _ffmpeg(
            d / "i.html", *audio_video, "-c:v", "libvpx", "-c:a", "libopus", "-f", "webm"
        ),
        "mkv": _ffmpeg(
            d / "j.txt", *audio_video, "-c:v", "mpeg4", "-c:a", "flac", "-f", "matroska"
        ),
        "avi": _ffmpeg(
            d / "k.txt", *audio_video, "-c:v", "mpeg4", "-c:a", "libmp3lame", "-f", "avi"
        ),
        "silent-mp4": _ffmpeg(d / "l.mp4", *PICTURE, "-c:v", "libx264", "-f", "mp4"),
    }


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("mp3", "mp3"),
        ("mp3-bare", "mp3"),
        ("wav", "wav"),
        ("m4a", "m4a"),
        ("ogg", "ogg"),
        ("flac", "flac"),
        ("mp4", "mp4"),
        ("mov", "mov"),
        ("webm", "webm"),
        ("mkv", "mkv"),
        ("avi", "avi"),
        ("silent-mp4", "mp4"),
    ],
)
def test_media_is_sniffed_by_content(media: dict[str, Path], name: str, kind: str) -> None:
    assert sniff_file(media[name], media[name].name) == kind


def test_media_is_not_parsed_but_named_for_transcription(media: dict[str, Path]) -> None:
    with pytest.raises(MediaFileError) as info:
        parse_file(media["wav"], "meeting.wav")
    assert info.value.kind == "wav" and info.value.code == "unsupported_file"
    assert info.value.message.startswith("content is WAV audio: audio and video are transcribed")
    assert "/v1/audio/transcriptions" in info.value.message


def test_text_and_images_that_look_a_little_like_media_are_not_media(tmp_path: Path) -> None:
    text = tmp_path / "id3.txt"
    text.write_bytes(b"ID3 tags are metadata in MP3 files.\n")
    assert sniff_file(text, "id3.txt") == "text"
    heic = tmp_path / "photo.heic"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    with pytest.raises(UnsupportedFileError, match="a HEIF/AVIF image"):
        sniff_file(heic, "photo.heic")
    sync = tmp_path / "sync.txt"
    sync.write_bytes(b"\xff\xfb\x50\xc4" + b"no second frame here" * 20)  # one frame header only
    assert sniff_file(sync, "sync.txt") == "text"


@pytest.mark.parametrize("name", ["mp3", "mp3-bare", "m4a", "ogg", "flac", "wav"])
def test_audio_is_probed(media: dict[str, Path], name: str) -> None:
    info = probe(media[name], MediaOptions())
    assert info.audio_streams == 1 and info.video_streams == 0
    assert info.duration_s == pytest.approx(12.0, abs=0.2)


@pytest.mark.parametrize("name", ["mp4", "mov", "webm", "mkv", "avi"])
def test_video_with_sound_is_probed(media: dict[str, Path], name: str) -> None:
    info = probe(media[name], MediaOptions())
    assert (info.audio_streams, info.video_streams) == (1, 1)
    assert info.duration_s == pytest.approx(12.0, abs=0.3)


def test_video_without_sound_is_refused(media: dict[str, Path]) -> None:
    with pytest.raises(
        InvalidFileError, match=r"^no audio stream to transcribe \(the file holds video only\)$"
    ):
        probe(media["silent-mp4"], MediaOptions())


def test_recordings_over_the_cap_are_refused(media: dict[str, Path]) -> None:
    with pytest.raises(InvalidFileError) as info:
        probe(media["flac"], MediaOptions(max_duration_s=10))
    assert info.value.message == (
        "the recording is 0:12 long; at most 0:10 is transcribed (PREPSHELF_MEDIA_MAX_DURATION_S)"
    )


def test_segments_are_mono_16k_flac_of_the_planned_length(
    media: dict[str, Path], tmp_path: Path
) -> None:
    seen = []
    for segment in iter_segments(media["mp4"], tmp_path, MediaOptions(segment_s=5)):
        assert segment.path is not None and segment.path.is_file()
        stream = _stream(segment.path)
        assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == (
            "flac",
            "16000",
            1,
        )
        assert float(stream["duration"]) == pytest.approx(segment.duration_s, abs=0.05)
        seen.append((segment.index, segment.count, segment.start_s, segment.end_s))
    assert seen == [(0, 3, 0.0, 5.0), (1, 3, 5.0, 10.0), (2, 3, 10.0, pytest.approx(12.0, abs=0.3))]
    assert list(tmp_path.iterdir()) == []  # each segment's file was deleted after use


def test_a_resumed_job_starts_at_its_next_segment(media: dict[str, Path], tmp_path: Path) -> None:
    segments = list(iter_segments(media["wav"], tmp_path, MediaOptions(segment_s=5), start_index=2))
    assert [(s.index, s.start_s) for s in segments] == [(2, 10.0)]


def test_mp3_segments(media: dict[str, Path], tmp_path: Path) -> None:
    options = MediaOptions(segment_s=5, segment_format="mp3")
    plan = plan_segments(probe(media["ogg"], options).duration_s, 5)
    segment = extract_segment(media["ogg"], plan[1], tmp_path, options)
    assert segment.path is not None and segment.path.suffix == ".mp3"
    assert _stream(segment.path)["codec_name"] == "mp3"


def test_plans_join_a_short_tail_to_the_segment_before() -> None:
    assert [(s.start_s, s.end_s) for s in plan_segments(601.0, 300)] == [
        (0.0, 300.0),
        (300.0, 601.0),
    ]
    assert [(s.start_s, s.end_s) for s in plan_segments(620.0, 300)] == [
        (0.0, 300.0),
        (300.0, 600.0),
        (600.0, 620.0),
    ]
    assert [(s.start_s, s.end_s) for s in plan_segments(3.0, 300)] == [(0.0, 3.0)]


def test_truncated_and_garbage_media_fail_precisely(media: dict[str, Path], tmp_path: Path) -> None:
    data = media["mp4"].read_bytes()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: len(data) // 3])  # the index (moov) is at the end: gone
    cases = {
        truncated: "corrupt or unreadable media (reading the media): ",
        _garbage(
            tmp_path / "g1", b"OggS\x00\x02" + os.urandom(4000)
        ): "corrupt or unreadable media",
        _garbage(tmp_path / "g2", b"fLaC" + os.urandom(4000)): "corrupt or unreadable media",
        _garbage(tmp_path / "g3", b"\x00\x00\x00\x18ftypisom" + os.urandom(4000)): "corrupt",
        _garbage(tmp_path / "g4", b"\x1aE\xdf\xa3" + os.urandom(4000)): "corrupt",
    }
    for path, expected in cases.items():
        assert sniff_file(path, path.name) in {"mp4", "ogg", "flac", "webm", "mkv"}
        with pytest.raises(InvalidFileError) as info:
            list(iter_segments(path, tmp_path / "out", MediaOptions()))
        assert expected in info.value.message, info.value.message
        assert str(path) not in info.value.message and str(tmp_path) not in info.value.message


def test_an_mp3_cut_short_fails_at_its_first_missing_segment(
    media: dict[str, Path], tmp_path: Path
) -> None:
    data = media["mp3"].read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 3])  # its Xing header still says 12 s
    segments = iter_segments(cut, tmp_path / "out", MediaOptions(segment_s=5))
    assert next(segments).index == 0
    with pytest.raises(InvalidFileError) as info:
        list(segments)
    assert info.value.message == (
        "corrupt or unreadable media: segment 2 of 3 (0:05–0:10) holds no decodable audio"
    )


def test_a_wav_cut_short_is_the_audio_that_is_left(media: dict[str, Path], tmp_path: Path) -> None:
    data = media["wav"].read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 3])
    assert probe(cut, MediaOptions()).duration_s == pytest.approx(4.0, abs=0.1)


def test_tool_limits_and_a_missing_ffmpeg(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidFileError, match=r"^reading the media took longer than 0.0001 s"):
        probe(media["wav"], MediaOptions(timeout_s=0.0001))
    with pytest.raises(InvalidFileError, match="memory") as info:
        probe(media["wav"], MediaOptions(memory_limit_bytes=200 * 1024 * 1024))
    assert "PREPSHELF_MEDIA_MEMORY_LIMIT_MB" in info.value.message
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MediaToolMissingError) as missing:
        probe(media["wav"], MediaOptions())
    assert missing.value.message.startswith("ffprobe is not installed on this worker")
    assert "Debian package `ffmpeg`" in missing.value.message and missing.value.retryable


def _garbage(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _stream(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
        capture_output=True,
        check=True,
    )
    stream: dict[str, object] = json.loads(out.stdout)["streams"][0]
    return stream
