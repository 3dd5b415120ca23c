"""Settings of the work beyond text files, as sections of `Settings` (settings.py): OCR of
scans and images, and the upstream model servers with the media they transcribe."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class OcrSettings(BaseModel):
    # --- OCR of scans and images (docs/ocr.md) ---
    ocr_enabled: bool = Field(
        default=True, description="OCR scanned PDF pages and images; false = they fail as before"
    )
    ocr_languages: str | None = Field(
        default=None,
        description="Tesseract languages joined by '+', e.g. eng+deu; unset = every installed "
        "language (eng first). A store's metadata or a file's attributes `ocr_languages` narrow it",
    )
    ocr_tessdata_dir: Path | None = Field(
        default=None,
        description="Tesseract language data directory; unset = TESSDATA_PREFIX, the Debian and "
        "Homebrew locations, then what the tesseract binary reports",
    )
    ocr_dpi: int = Field(default=300, ge=72, le=1200, description="PDF pages render at this DPI")
    ocr_max_page_pixels: int = Field(
        default=40_000_000,
        gt=0,
        description="Pixels per image or page: a larger image fails; a larger PDF page renders at "
        "a lower DPI",
    )
    ocr_max_pages: int = Field(
        default=1000, gt=0, description="Pages OCR'd per file; a file that needs more fails"
    )
    ocr_page_timeout_s: float = Field(default=120.0, gt=0, description="OCR time per page")
    ocr_timeout_s: float = Field(
        default=3600.0, gt=0, description="OCR time per file (on top of PREPSHELF_PARSE_TIMEOUT_S)"
    )
    ocr_min_confidence: float = Field(
        default=50.0,
        ge=0,
        le=100,
        description="Pages whose mean word confidence (0..100) is lower are left out of the index "
        "and listed in the job's result; 0 keeps everything",
    )
    ocr_page_min_chars: int = Field(
        default=20,
        ge=0,
        description="A PDF page with an image and fewer letters/digits than this in its text "
        "layer is OCR'd",
    )


class UpstreamSettings(BaseModel):
    # --- upstreams, shared rate limits and media (docs/upstreams.md) ---
    upstreams_file: Path | None = Field(
        default=None,
        description="TOML (or .json) file naming the OpenAI-compatible upstreams, their keys, "
        "limits and models; see docs/upstreams.md",
    )
    upstreams: str | None = Field(
        default=None,
        description="The same document as JSON, for deployments configured by environment "
        "only; not together with PREPSHELF_UPSTREAMS_FILE",
    )
    upstream_rate_guard_s: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="Requests and tokens are counted over 60 s plus this much, so the delay "
        "between admitting a request and the upstream receiving it never lets a 60-second "
        "window at the upstream see more than its rpm/tpm",
    )
    upstream_slot_margin_s: float = Field(
        default=10.0,
        gt=0,
        description="A request holds one of its upstream's max_concurrent slots until it "
        "ends, or at most its timeout plus this long (a worker killed mid-call frees its "
        "slot then)",
    )
    upstream_poll_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="How often a request waiting only for a concurrency slot looks again",
    )
    transcription_model: str | None = Field(
        default=None,
        description="The upstream model that transcribes audio and video added to stores; "
        "unset = the first configured model serving /v1/audio/transcriptions",
    )
    media_segment_s: float = Field(
        default=300.0,
        ge=10,
        le=3600,
        description="Audio is transcribed in segments of this many seconds; each one is a "
        "checkpoint of the job",
    )
    media_max_duration_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Longest audio/video a file may hold; a longer one fails at once",
    )
    media_segment_format: Literal["flac", "mp3"] = Field(
        default="flac",
        description="Codec of the segments sent for transcription (mono 16 kHz): flac is "
        "lossless (~1 MB a minute), mp3 smaller (~0.5 MB a minute at 64 kbit/s)",
    )
    media_timeout_s: float = Field(
        default=300.0, gt=0, description="Time one ffprobe/ffmpeg run may take"
    )
    media_memory_limit_mb: int = Field(
        default=1024,
        ge=512,
        description="Address space one ffprobe/ffmpeg run may use (Debian's ffmpeg maps "
        "~300 MB of libraries before it reads a byte)",
    )
