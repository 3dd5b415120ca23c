"""Recordings made with ffmpeg for the tests, and an upstream configuration that transcribes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

TRANSCRIBER = "whisper-fake"
SINE = ["-f", "lavfi", "-i", "sine=frequency={f}:duration={d}"]


def recording(path: Path, seconds: float, frequency: int = 440) -> bytes:
    args = [a.format(f=frequency, d=seconds) for a in SINE]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *args, "-c:a", "libmp3lame", "-f", "mp3", str(path)],
        check=True,
        timeout=120,
    )
    return path.read_bytes()


def transcription_config(url: str) -> dict[str, Any]:
    return {
        "upstreams": {
            "speech": {
                "base_url": url,
                "endpoints": ["/v1/audio/transcriptions"],
                "max_concurrent": 2,
                "timeout_s": 30,
                "retries": 3,
                "backoff_base_s": 0.2,
                "models": [TRANSCRIBER],
            }
        }
    }
