"""Audio and video → audio segments ready to transcribe, with ffprobe and ffmpeg (Debian `ffmpeg`).

`probe` reads what a file holds (duration, audio and video streams) and refuses, with a precise
message, media that cannot be transcribed: corrupt or truncated files, video without sound,
recordings over the duration cap. `plan_segments` cuts the duration into segments of
`segment_s` seconds (a short tail joins the segment before it); `extract_segment` writes one
segment's audio, mono 16 kHz FLAC or MP3 (formats every OpenAI-compatible transcription
endpoint accepts), to a file. A job extracts segment after segment, each a checkpoint, so a
resumed job starts at its first unfinished segment without redoing the others, and only one
segment's file exists at a time (`iter_segments` deletes each when the next is asked for).

Every ffprobe/ffmpeg run is a subprocess with a time limit (`timeout_s`, then killed) and an
address-space limit (`memory_limit_bytes`, set with prlimit on the child). Messages never
contain the file's path or name.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prepshelf.errors import FileProcessingError, InvalidFileError

if TYPE_CHECKING:
    from prepshelf.settings import Settings

SegmentFormat = Literal["flac", "mp3"]
SAMPLE_RATE = 16_000
_CODEC_ARGS: dict[SegmentFormat, list[str]] = {
    "flac": ["-c:a", "flac", "-f", "flac"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
}
CONTENT_TYPES: dict[SegmentFormat, str] = {"flac": "audio/flac", "mp3": "audio/mpeg"}
_MAX_TAIL_S = 5.0  # a last piece shorter than this (and a tenth of a segment) joins the one before
_DEBIAN_PACKAGE = "ffmpeg"
# How running out of address space shows: while loading its libraries (Debian's ffmpeg maps
# ~300 MB of them), or in the codecs.
_OUT_OF_MEMORY = ("failed to map segment", "cannot allocate memory", "out of memory")


class MediaToolMissingError(FileProcessingError):
    """ffmpeg/ffprobe is not installed on this worker (not the file's fault)."""

    retryable = True  # another worker may have it; the job goes back on the shelf


@dataclass(frozen=True)
class MediaOptions:
    segment_s: float = 300.0
    max_duration_s: float = 4 * 3600.0
    segment_format: SegmentFormat = "flac"
    timeout_s: float = 300.0  # one ffprobe/ffmpeg run
    memory_limit_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaOptions:
        return cls(
            segment_s=settings.media_segment_s,
            max_duration_s=settings.media_max_duration_s,
            segment_format=settings.media_segment_format,
            timeout_s=settings.media_timeout_s,
            memory_limit_bytes=settings.media_memory_limit_mb * 1024 * 1024,
        )


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    container: str  # ffprobe's format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    audio_streams: int
    video_streams: int
    audio_codec: str  # of the first audio stream, the one transcribed


@dataclass(frozen=True)
class AudioSegment:
    index: int  # 0-based; segment `index + 1` of `count` in messages and chunk attributes
    count: int
    start_s: float
    end_s: float
    path: Path | None = None  # the extracted audio, once written

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def probe(path: Path, options: MediaOptions) -> MediaInfo:
    """What the file holds; InvalidFileError when it cannot be transcribed (see module doc)."""
    out = _run(
        "ffprobe",
        ["-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        path,
        options,
        what="reading the media",
    )
    try:
        data = json.loads(out)
        streams = [s for s in data.get("streams", []) if isinstance(s, dict)]
        container = str(data.get("format", {}).get("format_name", "unknown"))
    except (ValueError, AttributeError) as exc:
        raise InvalidFileError("corrupt or unreadable media: ffprobe gave no description") from exc
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")  # cover art is no video
    ]
    if not audio:
        holds = "video only" if video else "no audio or video stream"
        raise InvalidFileError(f"no audio stream to transcribe (the file holds {holds})")
    duration = _number(data.get("format", {}).get("duration")) or _number(audio[0].get("duration"))
    if duration is None:
        duration = _decoded_duration(path, options)  # e.g. browser-recorded WebM: no header
    if duration <= 0:
        raise InvalidFileError("no audio to transcribe (the audio stream is empty)")
    if duration > options.max_duration_s:
        raise InvalidFileError(
            f"the recording is {_clock(duration)} long; at most {_clock(options.max_duration_s)} "
            "is transcribed (PREPSHELF_MEDIA_MAX_DURATION_S)"
        )
    return MediaInfo(
        duration_s=duration,
        container=container,
        audio_streams=len(audio),
        video_streams=len(video),
        audio_codec=str(audio[0].get("codec_name", "unknown")),
    )


def plan_segments(duration_s: float, segment_s: float) -> list[AudioSegment]:
    """[start, end) pieces of `segment_s` seconds covering `duration_s`; a tail shorter than
    min(5 s, segment_s / 10) joins the piece before it."""
    count = max(1, math.ceil(duration_s / segment_s))
    tail = duration_s - (count - 1) * segment_s
    if count > 1 and tail < min(_MAX_TAIL_S, segment_s / 10):
        count -= 1
    return [
        AudioSegment(
            index=i,
            count=count,
            start_s=round(float(i * segment_s), 3),
            end_s=round(float(duration_s if i == count - 1 else (i + 1) * segment_s), 3),
        )
        for i in range(count)
    ]


def extract_segment(
    path: Path, segment: AudioSegment, out_dir: Path, options: MediaOptions
) -> AudioSegment:
    """Write `segment`'s audio (first audio stream, mono 16 kHz) into `out_dir`."""
    fmt = options.segment_format
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"segment-{segment.index:05d}.{fmt}"
    args = ["-nostdin", "-v", "error", "-threads", "1", "-y"]
    args += ["-ss", f"{segment.start_s:.3f}", "-t", f"{segment.duration_s:.3f}", "-i", str(path)]
    args += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    args += [*_CODEC_ARGS[fmt], "-progress", "pipe:1", str(target)]
    out = _run("ffmpeg", args, path, options, what=f"extracting segment {segment.index + 1}")
    written = _progress_seconds(out)  # a file cut short: ffmpeg writes an empty segment
    if not target.is_file() or not written:
        raise InvalidFileError(
            f"corrupt or unreadable media: segment {segment.index + 1} of {segment.count} "
            f"({_clock(segment.start_s)}–{_clock(segment.end_s)}) holds no decodable audio"
        )
    return AudioSegment(segment.index, segment.count, segment.start_s, segment.end_s, target)


def iter_segments(
    path: Path, out_dir: Path, options: MediaOptions, *, start_index: int = 0
) -> Iterator[AudioSegment]:
    """Probe, then extract segment after segment from `start_index` on; each segment's file
    is deleted when the next one is asked for (and when the iteration ends)."""
    info = probe(path, options)
    current: AudioSegment | None = None
    try:
        for planned in plan_segments(info.duration_s, options.segment_s)[start_index:]:
            current = extract_segment(path, planned, out_dir, options)
            yield current
            _remove(current)
            current = None
    finally:
        if current is not None:
            _remove(current)


def _remove(segment: AudioSegment) -> None:
    if segment.path is not None:
        segment.path.unlink(missing_ok=True)


def _decoded_duration(path: Path, options: MediaOptions) -> float:
    """Duration by decoding the first audio stream (for containers that do not say), read
    from ffmpeg's progress; stops past the cap, so a huge stream costs no more than that."""
    args = ["-nostdin", "-v", "error", "-threads", "1", "-i", str(path), "-map", "0:a:0"]
    args += ["-t", f"{options.max_duration_s + 1:.0f}", "-f", "null", "-progress", "pipe:1", "-"]
    out = _run("ffmpeg", args, path, options, what="measuring the audio")
    seconds = _progress_seconds(out)
    if seconds is None:
        raise InvalidFileError("corrupt or unreadable media: its duration cannot be read")
    return seconds


def _progress_seconds(out: bytes) -> float | None:
    """The audio time ffmpeg reached, from its `-progress` report (None when it said none)."""
    times = [
        line.split("=", 1)[1]
        for line in out.decode(errors="replace").splitlines()
        if line.startswith("out_time_us=")
    ]
    micro = _number(times[-1]) if times else None
    return None if micro is None else max(0.0, micro / 1_000_000)


def _run(tool: str, args: list[str], path: Path, options: MediaOptions, *, what: str) -> bytes:
    """Run ffprobe/ffmpeg under the time and memory limits; stdout, or a precise error."""
    try:
        proc = subprocess.Popen(
            [tool, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise MediaToolMissingError(
            f"{tool} is not installed on this worker: install the Debian package "
            f"`{_DEBIAN_PACKAGE}` (apt-get install {_DEBIAN_PACKAGE}; scripts/system-deps.sh)"
        ) from None
    limit = options.memory_limit_bytes
    with contextlib.suppress(ProcessLookupError, OSError):
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
    try:
        out, err = proc.communicate(timeout=options.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise InvalidFileError(
            f"{what} took longer than {options.timeout_s:g} s (PREPSHELF_MEDIA_TIMEOUT_S)"
        ) from None
    if proc.returncode == 0:
        return out
    detail = _first_line(err, path)
    megabytes = limit // (1024 * 1024)
    if any(sign in detail.lower() for sign in _OUT_OF_MEMORY):
        raise InvalidFileError(
            f"{what} needs more than {megabytes} MB of memory (PREPSHELF_MEDIA_MEMORY_LIMIT_MB)"
        )
    if proc.returncode < 0:
        raise InvalidFileError(
            f"{what} failed: {tool} crashed (signal {-proc.returncode}; the memory limit is "
            f"{megabytes} MB, PREPSHELF_MEDIA_MEMORY_LIMIT_MB)"
        )
    raise InvalidFileError(f"corrupt or unreadable media ({what}): {detail}")


def _first_line(err: bytes, path: Path) -> str:
    """ffmpeg's first complaint, without the path it names."""
    text = err.decode("utf-8", errors="replace").replace(str(path), "input")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "no detail")[:300]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _clock(seconds: float) -> str:
    """1:02:03 or 2:03 (h:mm:ss / m:ss)."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
