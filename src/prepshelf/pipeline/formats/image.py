"""Images as documents, read by OCR: PNG, JPEG, TIFF (every page), WebP, BMP, GIF (first frame).

Pillow decodes; a page's size is checked from its header before any pixel is decoded, so a
pixel bomb costs a few bytes of reading. Every page is turned to 8-bit grey on white (EXIF
orientation applied, transparency flattened, 16-bit and float samples scaled) for Tesseract.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prepshelf.errors import InvalidFileError, UnsupportedFileError
from prepshelf.pipeline.formats import Extracted, PageText
from prepshelf.pipeline.ocr_run import OcrContext, OcrRun, check_page_count, check_page_size

# Our kind -> Pillow's format name (the only decoder Pillow may try for it).
IMAGE_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "webp": "WEBP",
    "bmp": "BMP",
    "gif": "GIF",
}
_LABELS = {"webp": "WebP"}
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def label(kind: str) -> str:
    return _LABELS.get(kind, kind.upper())


def extract_image(path: Path, kind: str, ctx: OcrContext) -> Extracted:
    """OCR every page of the image; pages OCR found nothing in are left out."""
    name = label(kind)
    if not ctx.options.enabled:
        raise UnsupportedFileError(
            f"{name} images are read by OCR, which is off on this worker (PREPSHELF_OCR_ENABLED)"
        )
    # Our own per-page limit applies (checked from the header before any decoding), with a
    # message naming its setting; Pillow's global guard would raise or warn with its own
    # numbers first. Restored afterwards: nothing else in the process loses the guard.
    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd metadata makes Pillow warn; the text counts
            try:
                image = Image.open(path, formats=[IMAGE_FORMATS[kind]])
            except UnidentifiedImageError:
                raise InvalidFileError(f"corrupt {name}: Pillow cannot read its header") from None
            except _DECODE_ERRORS as exc:  # e.g. the header itself is cut short
                raise InvalidFileError(f"corrupt {name}: {_reason(exc)}") from None
            with image:
                return _ocr_pages(image, kind, ctx)
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def _ocr_pages(image: Image.Image, kind: str, ctx: OcrContext) -> Extracted:
    options = ctx.options
    check_page_size(1, image.width, image.height, options)
    count, stop = _page_count(image, kind, options.max_pages)
    check_page_count(count, options, at_least=count > options.max_pages)
    run = OcrRun(ctx, total=count + (stop is not None))
    pages: list[PageText] = []
    for index in range(count):
        number = index + 1
        try:
            if index:
                image.seek(index)
            check_page_size(number, image.width, image.height, options)
            grey = _grey(image)
        except _DECODE_ERRORS as exc:
            if count == 1:
                raise InvalidFileError(f"corrupt {label(kind)}: {_reason(exc)}") from None
            run.unreadable(number, _reason(exc))
            continue
        page = run.read(number, grey, dpi=None)  # Tesseract estimates the resolution itself
        if page is not None:
            pages.append(page)
    if stop is not None:
        run.unreadable(count + 1, f"{stop}; later pages are not read")
    return Extracted(
        text="",
        pages=count,
        page_texts=tuple(pages),
        ocr=run.report(),
        empty_reason=run.empty_reason(),
    )


def _page_count(image: Image.Image, kind: str, cap: int) -> tuple[int, str | None]:
    """Pages to OCR (TIFF: walked to at most cap + 1; others: the first frame only) and, when a
    page directory is broken, why counting stopped there."""
    if kind != "tiff":
        return 1, None
    count, stop = 1, None
    try:
        while count <= cap:
            image.seek(count)
            count += 1
    except EOFError:
        pass
    except _DECODE_ERRORS as exc:
        stop = _reason(exc)
    image.seek(0)
    return count, stop


def _grey(frame: Image.Image) -> Image.Image:
    """8-bit grey, upright per EXIF, transparent areas white (dark text on a clear background
    would otherwise sit on black)."""
    frame.load()
    frame = ImageOps.exif_transpose(frame)
    if frame.mode in _WIDE_MODES:
        samples = np.asarray(frame, dtype=np.float32)
        low, high = float(samples.min()), float(samples.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return Image.fromarray(((samples - low) * scale).astype(np.uint8))
    if "A" in frame.getbands() or "transparency" in frame.info:
        rgba = frame.convert("RGBA")
        frame = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    try:
        return frame.convert("L")
    except ValueError:  # modes without a direct route to grey (e.g. LAB)
        return frame.convert("RGB").convert("L")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
