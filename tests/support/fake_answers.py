"""The deterministic answers of the fake upstream, importable by tests to know what to expect.

- Completions: a short text derived from the sha256 of the prompt, cut to `max_tokens`.
- Embeddings: a unit vector seeded by the sha256 of the text (same text, same vector).
- Transcriptions: words derived from the sha256 of the audio bytes, one segment per
  `TRANSCRIPT_SEGMENT_S` seconds of the audio (its duration measured by ffprobe).
- Token counts: cl100k_base, with OpenAI's chat overhead (3 per message, 1 per name, 3 for
  the reply): real `usage` numbers, computed here independently of prepshelf's estimator.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np

from prepshelf.pipeline.cl100k import encoding

TRANSCRIPT_SEGMENT_S = 5.0
_WORDS = [
    "river",
    "stone",
    "light",
    "harbor",
    "winter",
    "signal",
    "garden",
    "paper",
    "orbit",
    "cedar",
    "meadow",
    "lantern",
    "copper",
    "valley",
    "thunder",
    "window",
    "canvas",
    "falcon",
    "marble",
    "engine",
    "silver",
    "forest",
    "island",
    "candle",
    "bridge",
    "planet",
    "ribbon",
    "summit",
    "violet",
    "anchor",
    "desert",
    "feather",
    "glacier",
    "hollow",
    "ivory",
    "jasmine",
    "kettle",
    "ladder",
    "mirror",
    "needle",
    "ocean",
    "pepper",
    "quartz",
    "rocket",
    "saddle",
    "tunnel",
    "velvet",
    "walnut",
    "yellow",
    "zephyr",
    "amber",
    "basket",
    "cotton",
    "dragon",
    "ember",
    "frost",
    "grove",
    "honey",
]


def tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def chat_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = 3
    for message in messages:
        total += 3
        for key in ("role", "content", "name"):
            value = message.get(key)
            if isinstance(value, str):
                total += tokens(value) + (1 if key == "name" else 0)
    return total


def chat_prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)


def completion_text(prompt: str, max_tokens: int | None = None) -> tuple[str, str]:
    """(text, finish_reason) the fake answers for `prompt`: 'length' when cut to max_tokens."""
    digest = hashlib.sha256(prompt.encode()).digest()
    words = [_WORDS[b % len(_WORDS)] for b in digest[1 : 5 + digest[0] % 12]]
    text = f"re {digest.hex()[:8]}: {' '.join(words)}."
    if max_tokens is not None:
        ids = encoding().encode_ordinary(text)
        if len(ids) > max_tokens:
            return encoding().decode(ids[:max_tokens]), "length"
    return text, "stop"


def vector_for(text: str, dims: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    v = np.random.default_rng(seed).standard_normal(dims)
    return [float(x) for x in v / np.linalg.norm(v)]


@dataclass(frozen=True)
class FakeSegment:
    start: float
    end: float
    text: str


def audio_duration(audio: bytes) -> float | None:
    """The duration ffprobe reads from the bytes (None when it cannot)."""
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-i", "pipe:0"],
            input=audio,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return float(json.loads(out.stdout)["format"]["duration"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None


def transcript_for(audio: bytes, duration_s: float | None = None) -> list[FakeSegment]:
    """The fake's transcript of `audio`: one segment per TRANSCRIPT_SEGMENT_S seconds."""
    if duration_s is None:
        duration_s = audio_duration(audio) or max(0.1, len(audio) / 32000)
    digest = hashlib.sha256(audio).digest()
    count = max(1, math.ceil(duration_s / TRANSCRIPT_SEGMENT_S - 1e-9))
    segments = []
    for i in range(count):
        start = i * TRANSCRIPT_SEGMENT_S
        end = min(duration_s, start + TRANSCRIPT_SEGMENT_S)
        words = [_WORDS[digest[(i * 3 + k) % 32] % len(_WORDS)] for k in range(4)]
        segments.append(
            FakeSegment(
                round(start, 3), round(end, 3), f"{digest.hex()[:6]} {i} " + " ".join(words)
            )
        )
    return segments


def transcript_text(segments: list[FakeSegment]) -> str:
    return " ".join(s.text for s in segments)


def transcription_answer(audio: bytes, body: dict[str, Any]) -> dict[str, Any] | str:
    """The answer to a transcription request for `audio` in its `response_format`."""
    duration = audio_duration(audio)
    if duration is None:
        raise ValueError("the audio file could not be decoded")
    segments = transcript_for(audio, duration)
    text = transcript_text(segments)
    fmt = body.get("response_format", "json")
    usage = {"type": "duration", "seconds": max(1, round(duration))}
    if fmt == "text":
        return text
    if fmt in ("srt", "vtt"):
        cues = [f"{_stamp(s.start, fmt)} --> {_stamp(s.end, fmt)}\n{s.text}\n" for s in segments]
        if fmt == "srt":
            return "\n".join(f"{i + 1}\n{cue}" for i, cue in enumerate(cues))
        return "WEBVTT\n\n" + "\n".join(cues)
    if fmt == "verbose_json":
        return {
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": [
                {
                    "id": i,
                    "seek": 0,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "tokens": [],
                    "temperature": 0.0,
                    "avg_logprob": -0.2,
                    "compression_ratio": 1.2,
                    "no_speech_prob": 0.01,
                }
                for i, s in enumerate(segments)
            ],
            "usage": usage,
        }
    return {"text": text, "usage": usage}


def _stamp(seconds: float, fmt: str) -> str:
    ms = round(seconds * 1000)
    sep = "," if fmt == "srt" else "."
    return (
        f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"
    )
