"""Scans and images made in the test: rendered text of known content, and hostile images."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core

# Sentences whose words a search must find again (no word shared between them).
QUARTERMASTER = "The quartermaster counted forty barrels of salted herring in the hold."
ZEPHYR = "Zephyr quickly jumped over seven lazy dwarves near the old watermill."
INVOICE = "Invoices must be paid within thirty days of the delivery date."
LIGHTHOUSE = "Lighthouse keepers logged every passing schooner during the winter storms."


def font(size: int) -> Any:
    """A real TrueType font: DejaVu Sans when installed, else the one Pillow ships."""
    if DEJAVU.is_file():
        return ImageFont.truetype(str(DEJAVU), size)
    return ImageFont.load_default(size)


def text_page(*lines: str, size: tuple[int, int] = (2000, 700), font_size: int = 40) -> Image.Image:
    """Black text on white, like a clean 300 DPI scan of 10-12 pt type."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    draw.multiline_text((60, 60), "\n".join(lines), font=font(font_size), fill=0, spacing=24)
    return image


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def tiff_pages(*pages: Image.Image, compression: str = "tiff_lzw") -> bytes:
    buffer = io.BytesIO()
    # Copies: an image saved before keeps its old encoder settings, which the TIFF writer
    # would pass on for appended pages (Pillow 13).
    first, *rest = (page.copy() for page in pages)
    first.save(buffer, format="TIFF", save_all=True, append_images=rest, compression=compression)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height but whose pixel data is a few bytes: the
    'huge dimensions, tiny file' bomb."""
    return _png(width, height, zlib.compress(b"\x00" * 64))


def png_white(width: int, height: int) -> bytes:
    """A real, complete grey PNG of width × height white pixels, compressed row by row (a
    10,000 × 10,000 one is ~100 kB on disk and 100 MB once decoded)."""
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * width
    return _png(width, height, b"".join(comp.compress(row) for _ in range(height)) + comp.flush())


def many_page_tiff(pages: int) -> bytes:
    """A TIFF of `pages` tiny blank pages (a 2,000-page scan costs ~1 MB)."""
    frame = Image.new("1", (8, 8), 1)
    return tiff_pages(frame, *([frame] * (pages - 1)))
