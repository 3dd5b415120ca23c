"""PDF text via PDFium (rebuilds broken xrefs, opens empty-password encryption by itself).

Pages keep their text layer. A page whose layer is (almost) empty but which holds an image, a
scanned page, is rendered and OCR'd instead; pages stay in order, so a mixed PDF keeps its real
text and gains its scanned pages' text where they were.
"""

from __future__ import annotations

import math
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from prepshelf.errors import InvalidFileError
from prepshelf.pipeline.formats import Extracted, PageText
from prepshelf.pipeline.ocr import MAX_SIDE, OcrOptions
from prepshelf.pipeline.ocr_run import OcrContext, OcrRun

_IMAGE_OBJECTS = (pdfium_c.FPDF_PAGEOBJ_IMAGE,)


def extract_pdf(path: Path, ctx: OcrContext | None = None) -> Extracted:
    """Text of every page; scanned pages OCR'd when `ctx` allows it."""
    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise _open_error(exc) from exc
    try:
        page_count = len(pdf)
        texts: list[str | None] = []
        scanned: list[int] = []  # 0-based pages to OCR
        min_chars = ctx.options.page_min_chars if ctx and ctx.options.enabled else -1
        for index in range(page_count):
            try:
                text, has_image = _page_text(pdf, index)
            except pdfium.PdfiumError:
                texts.append(None)  # one broken page should not cost the rest of the document
                continue
            texts.append(text)
            if has_image and sum(c.isalnum() for c in text) < min_chars:
                scanned.append(index)
        if page_count and all(t is None for t in texts):
            raise InvalidFileError(f"corrupt PDF: none of its {page_count} page(s) could be read")
        recognised, run = _ocr(pdf, scanned, ctx) if scanned and ctx is not None else ({}, None)
    finally:
        pdf.close()
    # A scanned page OCR found nothing on keeps its (tiny) text layer, if any.
    pages = [
        recognised.get(i + 1) or PageText(i + 1, t) for i, t in enumerate(texts) if t is not None
    ]
    return Extracted(
        text="",
        pages=page_count,
        page_texts=tuple(pages),
        ocr=run.report() if run is not None else None,
        empty_reason=_empty_reason(page_count, run, ctx),
    )


def _ocr(
    pdf: pdfium.PdfDocument, scanned: list[int], ctx: OcrContext
) -> tuple[dict[int, PageText], OcrRun]:
    """OCR the scanned pages (0-based indexes); returns their texts by page number."""
    run = OcrRun(ctx, total=len(scanned))  # refuses more pages than the limit before any work
    recognised: dict[int, PageText] = {}
    for index in scanned:
        try:
            image, dpi = _render(pdf, index, ctx.options)
        except (pdfium.PdfiumError, ValueError) as exc:
            run.unreadable(index + 1, f"could not be rendered: {exc}")
            continue
        page = run.read(index + 1, image, dpi=dpi)
        if page is not None:
            recognised[page.page] = page
    return recognised, run


def _render(pdf: pdfium.PdfDocument, index: int, options: OcrOptions) -> tuple[Image.Image, int]:
    """The page in 8-bit grey at the OCR resolution, lowered for pages too big for the pixel
    or side limits (a poster's lettering is big enough); PDFium applies the page's /Rotate."""
    page = pdf[index]
    try:
        width_pt, height_pt = page.get_size()
        if width_pt < 1 or height_pt < 1:
            raise ValueError(f"page box of {width_pt:g} × {height_pt:g} pt")
        scale = min(
            options.dpi / 72,
            math.sqrt(options.max_page_pixels / (width_pt * height_pt)),
            (MAX_SIDE - 1) / max(width_pt, height_pt),
        )
        bitmap = page.render(scale=scale, grayscale=True)
        try:
            image = bitmap.to_pil().convert("L")
        finally:
            bitmap.close()
    finally:
        page.close()
    return image, max(1, round(scale * 72))


def _page_text(pdf: pdfium.PdfDocument, index: int) -> tuple[str, bool]:
    """The page's text layer and whether it holds an image (a scan candidate)."""
    # Close page and text page at once: 400-page documents would otherwise pile up native memory.
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            text = str(textpage.get_text_bounded())
        finally:
            textpage.close()
        has_image = next(iter(page.get_objects(filter=_IMAGE_OBJECTS)), None) is not None
        return text, has_image
    finally:
        page.close()


def _empty_reason(page_count: int, run: OcrRun | None, ctx: OcrContext | None) -> str:
    if page_count == 0:
        return "no extractable text (the PDF has no pages)"
    if run is not None:
        return run.empty_reason()
    if ctx is not None and not ctx.options.enabled:
        return (
            f"no extractable text (the PDF has {page_count} page(s) but no text layer, and OCR "
            "is off on this worker: PREPSHELF_OCR_ENABLED)"
        )
    return (
        f"no extractable text (the PDF has {page_count} page(s) but no text layer and no "
        "scanned image to OCR)"
    )


def _open_error(exc: pdfium.PdfiumError) -> InvalidFileError:
    code = getattr(exc, "err_code", None)
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return InvalidFileError("encrypted PDF: a user password is required to open it")
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return InvalidFileError("encrypted PDF: its security handler is not supported")
    reason = str(exc).rstrip(".")
    return InvalidFileError(f"corrupt PDF: {reason[:1].lower()}{reason[1:]}")
