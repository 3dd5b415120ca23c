"""PDF text via PDFium (rebuilds broken xrefs, opens empty-password encryption by itself)."""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from prepshelf.errors import InvalidFileError
from prepshelf.pipeline.formats import Extracted


def extract_pdf(path: Path) -> Extracted:
    """Text of every page, pages joined by a blank line."""
    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise _open_error(exc) from exc
    try:
        page_count = len(pdf)
        texts: list[str] = []
        failed = 0
        for index in range(page_count):
            try:
                texts.append(_page_text(pdf, index))
            except pdfium.PdfiumError:
                failed += 1  # one broken page should not cost the rest of the document
        if page_count and failed == page_count:
            raise InvalidFileError(f"corrupt PDF: none of its {page_count} page(s) could be read")
    finally:
        pdf.close()
    if page_count == 0:
        reason = "no extractable text (the PDF has no pages)"
    else:
        reason = (
            f"no extractable text (the PDF has {page_count} page(s) but no text layer; "
            "scanned without OCR?)"
        )
    return Extracted(text="\n\n".join(texts), pages=page_count, empty_reason=reason)


def _page_text(pdf: pdfium.PdfDocument, index: int) -> str:
    # Close page and text page at once: 400-page documents would otherwise pile up native memory.
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_bounded())
        finally:
            textpage.close()
    finally:
        page.close()


def _open_error(exc: pdfium.PdfiumError) -> InvalidFileError:
    code = getattr(exc, "err_code", None)
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return InvalidFileError("encrypted PDF: a user password is required to open it")
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return InvalidFileError("encrypted PDF: its security handler is not supported")
    reason = str(exc).rstrip(".")
    return InvalidFileError(f"corrupt PDF: {reason[:1].lower()}{reason[1:]}")
