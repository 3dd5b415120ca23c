"""OCR in the parse stage: images of known text, rotated and multi-page; scanned PDF pages in
order with real text; hostile images failing precisely; languages and a missing Tesseract."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageFilter

from prepshelf.errors import InvalidFileError, UnsupportedFileError
from prepshelf.jobs.ocr import requested_languages
from prepshelf.pipeline.ocr import OcrOptions, installed_languages
from prepshelf.pipeline.pages import PageSpan, chunk_attributes
from prepshelf.pipeline.parse import ParsedDocument, parse_file
from prepshelf.pipeline.sandbox import parse_in_subprocess, shutdown_sandbox
from prepshelf.settings import Settings
from support.corpus import CORPUS, needs_corpus
from support.scans import (
    INVOICE,
    LIGHTHOUSE,
    QUARTERMASTER,
    ZEPHYR,
    encode,
    many_page_tiff,
    png_header_only,
    png_white,
    text_page,
    tiff_pages,
)

ENG = OcrOptions(languages="eng")  # one language: faster where languages are not the point
LIMIT = 1024 * 2**20


@pytest.fixture(autouse=True, scope="module")
def _stop_children() -> Iterator[None]:
    yield
    shutdown_sandbox()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _words(text: str) -> set[str]:
    return {w.strip(".,").lower() for w in text.split()}


def _has(doc: ParsedDocument, sentence: str) -> bool:
    """Every word of `sentence` was read (OCR may split lines differently)."""
    return _words(sentence) <= _words(doc.text)


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kind", "options"),
    [
        ("PNG", "png", {}),
        ("JPEG", "jpeg", {"quality": 85}),
        ("WEBP", "webp", {"quality": 90}),
        ("BMP", "bmp", {}),
        ("GIF", "gif", {}),
        ("TIFF", "tiff", {"compression": "tiff_lzw"}),
    ],
)
def test_image_formats_are_read(
    tmp_path: Path, fmt: str, kind: str, options: dict[str, object]
) -> None:
    data = encode(text_page(QUARTERMASTER, ZEPHYR), fmt, **options)
    doc = parse_file(_write(tmp_path, f"scan.{fmt.lower()}", data), "upload.bin", ocr=ENG)
    assert doc.kind == kind and doc.pages == 1
    assert _has(doc, QUARTERMASTER) and _has(doc, ZEPHYR), doc.text
    (span,) = doc.page_spans
    assert (span.page, span.ocr, span.start, span.end) == (1, True, 0, len(doc.text))
    assert span.confidence is not None and span.confidence > 80
    assert doc.ocr is not None and doc.ocr.pages == (1,) and doc.ocr.languages == "eng"


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_images_are_turned_upright(tmp_path: Path, degrees: int) -> None:
    page = text_page(QUARTERMASTER, ZEPHYR, INVOICE, LIGHTHOUSE, size=(2000, 900))
    path = _write(tmp_path, "turned.png", encode(page.rotate(degrees, expand=True), "PNG"))
    doc = parse_file(path, "turned.png", ocr=ENG)
    assert _has(doc, QUARTERMASTER) and _has(doc, LIGHTHOUSE), doc.text
    assert doc.ocr is not None
    assert [d for _, d in doc.ocr.rotated] == [(360 - degrees) % 360]


def test_multi_page_tiff_keeps_pages_in_order(tmp_path: Path) -> None:
    pages = [text_page(QUARTERMASTER), text_page(ZEPHYR), text_page(INVOICE)]
    doc = parse_file(_write(tmp_path, "fax.tif", tiff_pages(*pages)), "fax.tif", ocr=ENG)
    assert doc.pages == 3 and [s.page for s in doc.page_spans] == [1, 2, 3]
    for span, sentence in zip(doc.page_spans, (QUARTERMASTER, ZEPHYR, INVOICE), strict=True):
        assert _words(sentence) <= _words(doc.text[span.start : span.end])
    assert doc.text.index("quartermaster") < doc.text.index("Zephyr") < doc.text.index("Invoices")


def test_transparent_sixteen_bit_and_exif_turned_images(tmp_path: Path) -> None:
    ink = text_page(QUARTERMASTER)
    clear = Image.new("RGBA", ink.size, (0, 0, 0, 0))  # black, fully transparent background
    clear.putalpha(ink.point(lambda v: 255 - v))  # the text is the only opaque part
    doc = parse_file(_write(tmp_path, "clear.png", encode(clear, "PNG")), "clear.png", ocr=ENG)
    assert _has(doc, QUARTERMASTER), doc.text

    wide = Image.fromarray((np.asarray(ink, dtype=np.uint16) * 257).astype(np.uint16))
    assert wide.mode.startswith("I;16")
    doc = parse_file(_write(tmp_path, "wide.png", encode(wide, "PNG")), "wide.png", ocr=ENG)
    assert _has(doc, QUARTERMASTER), doc.text

    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; viewers rotate it 90° clockwise
    turned = ink.rotate(90, expand=True)
    path = _write(tmp_path, "phone.jpg", encode(turned, "JPEG", exif=exif.tobytes()))
    doc = parse_file(path, "phone.jpg", ocr=ENG)
    assert _has(doc, QUARTERMASTER), doc.text
    assert doc.ocr is not None and doc.ocr.rotated == ()  # EXIF did it, not OSD


def test_unreadable_pages_are_flagged_not_indexed(tmp_path: Path) -> None:
    # A blur that leaves Tesseract guessing: it reads garbage at confidence ~20 (bench/ocr.py).
    smudged = text_page(ZEPHYR, INVOICE, LIGHTHOUSE, size=(2000, 900)).filter(
        ImageFilter.GaussianBlur(6)
    )
    with pytest.raises(
        InvalidFileError,
        match=r"^no text found by OCR above the confidence threshold of 50 "
        r"\(PREPSHELF_OCR_MIN_CONFIDENCE; page 1: \d+\)$",
    ):
        parse_file(_write(tmp_path, "smudge.png", encode(smudged, "PNG")), "s.png", ocr=ENG)

    path = _write(tmp_path, "mixed.tif", tiff_pages(text_page(QUARTERMASTER), smudged))
    doc = parse_file(path, "mixed.tif", ocr=ENG)
    assert _has(doc, QUARTERMASTER) and [s.page for s in doc.page_spans] == [1]
    assert "Zephyr" not in doc.text
    assert doc.ocr is not None and doc.ocr.pages == (1, 2)
    (flagged,) = doc.ocr.as_result()["low_confidence_pages"]
    assert flagged["page"] == 2 and flagged["confidence"] < 50 and flagged["words"] > 10

    rng = np.random.default_rng(7)
    noise = Image.fromarray(rng.integers(0, 256, (700, 1200), dtype=np.uint8))
    with pytest.raises(InvalidFileError, match=r"^no text found by OCR \(1 page\(s\) OCR'd"):
        parse_file(_write(tmp_path, "noise.png", encode(noise, "PNG")), "n.png", ocr=ENG)


def test_blank_image_fails_with_no_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "blank.png", encode(Image.new("L", (800, 600), 255), "PNG"))
    with pytest.raises(InvalidFileError, match=r"^no text found by OCR \(1 page\(s\) OCR'd"):
        parse_file(path, "blank.png")


# --- hostile images -------------------------------------------------------------------------


def test_pixel_bombs_are_refused_from_their_header(tmp_path: Path) -> None:
    bomb = _write(tmp_path, "bomb.png", png_white(10_000, 10_000))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(
        InvalidFileError,
        match=r"^page 1 is 10,000 × 10,000 pixels \(100\.0 megapixels\), more than the OCR "
        r"limit of 40\.0 megapixels per page \(PREPSHELF_OCR_MAX_PAGE_PIXELS\)$",
    ):
        parse_file(bomb, "bomb.png", ocr=ENG)
    tiny = _write(tmp_path, "tiny.png", png_header_only(100_000, 100_000))
    huge = r"^page 1 is 100,000 × 100,000 pixels \(10,000\.0 megapixels\)"
    with pytest.raises(InvalidFileError, match=huge):
        parse_file(tiny, "tiny.png", ocr=ENG)
    strip = _write(tmp_path, "strip.png", png_header_only(40_000, 100))
    with pytest.raises(InvalidFileError, match="Tesseract reads sides of 1 to 32,767 pixels"):
        parse_file(strip, "strip.png", ocr=ENG)


def test_truncated_and_broken_images_fail_precisely(tmp_path: Path) -> None:
    png = encode(text_page(QUARTERMASTER), "PNG")
    with pytest.raises(InvalidFileError, match=r"^corrupt PNG: .*truncated"):
        parse_file(_write(tmp_path, "cut.png", png[: len(png) // 2]), "cut.png", ocr=ENG)
    jpeg = encode(text_page(QUARTERMASTER).convert("RGB"), "JPEG")
    with pytest.raises(InvalidFileError, match=r"^corrupt JPEG: "):
        parse_file(_write(tmp_path, "cut.jpg", jpeg[:600]), "cut.jpg", ocr=ENG)
    with pytest.raises(InvalidFileError, match=r"^corrupt PNG: Pillow cannot read its header$"):
        parse_file(_write(tmp_path, "head.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64), "h", ocr=ENG)


def test_a_2000_page_tiff_fails_on_the_page_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "book.tif", many_page_tiff(2000))
    with pytest.raises(
        InvalidFileError,
        match=r"^more than 1,000 pages need OCR; the limit is 1,000 per file "
        r"\(PREPSHELF_OCR_MAX_PAGES\)$",
    ):
        parse_file(path, "book.tif", ocr=ENG)


def test_time_limits_name_their_setting(tmp_path: Path) -> None:
    page = text_page(QUARTERMASTER, ZEPHYR, INVOICE, LIGHTHOUSE, size=(2400, 3000), font_size=30)
    path = _write(tmp_path, "dense.png", encode(page, "PNG"))
    with pytest.raises(
        InvalidFileError,
        match=r"^OCR of page 1 took longer than 0\.01 s \(PREPSHELF_OCR_PAGE_TIMEOUT_S\)$",
    ):
        parse_file(path, "dense.png", ocr=OcrOptions(languages="eng", page_timeout_s=0.01))
    with pytest.raises(
        InvalidFileError,
        match=r"^OCR stopped after 0 of 1 pages: .* OCR time limit of 0\.01 s per file "
        r"\(PREPSHELF_OCR_TIMEOUT_S\)$",
    ):
        parse_file(path, "dense.png", ocr=OcrOptions(languages="eng", timeout_s=0.01))


# --- PDFs -----------------------------------------------------------------------------------


@needs_corpus
def test_scanned_corpus_pdf_is_read_and_the_fax_smiley_has_no_text() -> None:
    doc = parse_file(CORPUS / "bad" / "loremipsum-flat.pdf", "lorem.pdf", ocr=ENG)
    assert {"lorem", "ipsum", "consectetur", "pellentesque"} <= _words(doc.text)
    assert doc.page_spans[0].ocr and doc.ocr is not None and doc.ocr.pages == (1,)
    with pytest.raises(InvalidFileError, match=r"^no text found by OCR"):
        parse_file(CORPUS / "bad" / "imagemagick-CCITTFaxDecode.pdf", "fax.pdf", ocr=ENG)


@needs_corpus
def test_pdfs_with_a_text_layer_are_not_ocrd() -> None:
    for name in ("pdf-with-ocr-text.pdf", "a1977-backus-p21.pdf", "pdflatex-image.pdf"):
        doc = parse_file(CORPUS / name, name, ocr=ENG)
        assert doc.ocr is None and not any(s.ocr for s in doc.page_spans), name


@needs_corpus
def test_mixed_pdf_keeps_real_text_and_ocrs_scanned_pages_in_order(tmp_path: Path) -> None:
    text = pdfium.PdfDocument(CORPUS / "minimal-document.pdf")
    scan = pdfium.PdfDocument(CORPUS / "bad" / "loremipsum-flat.pdf")
    mixed = pdfium.PdfDocument.new()
    mixed.import_pages(scan)  # page 1: scanned
    mixed.import_pages(text)  # page 2: real text
    mixed.import_pages(scan)  # page 3: scanned again
    path = tmp_path / "mixed.pdf"
    mixed.save(path)
    for pdf in (text, scan, mixed):
        pdf.close()
    progress: list[tuple[int, int]] = []
    doc = parse_file(path, "mixed.pdf", ocr=ENG, progress=lambda d, t: progress.append((d, t)))
    assert [(s.page, s.ocr) for s in doc.page_spans] == [(1, True), (2, False), (3, True)]
    assert progress == [(0, 2), (1, 2), (2, 2)]
    real = parse_file(CORPUS / "minimal-document.pdf", "m.pdf").text
    second = doc.page_spans[1]
    assert doc.text[second.start : second.end] == real
    assert "ipsum" in doc.text[: doc.page_spans[0].end].lower()


def test_pdf_page_bigger_than_the_pixel_limit_renders_smaller(tmp_path: Path) -> None:
    poster = text_page(INVOICE, size=(2000, 400), font_size=50)
    path = tmp_path / "poster.pdf"
    poster.save(path, resolution=20.0)  # a 100 × 20 inch page: 180 megapixels at 300 DPI
    small = OcrOptions(languages="eng", max_page_pixels=4_000_000)
    doc = parse_file(path, "poster.pdf", ocr=small)
    assert _has(doc, INVOICE), doc.text


# --- languages, availability, switches ------------------------------------------------------


def test_languages_narrow_and_missing_ones_name_their_package(tmp_path: Path) -> None:
    german = "Größere Übergänge prüfen wir später gründlich."
    path = _write(tmp_path, "de.png", encode(text_page(german), "PNG"))
    doc = parse_file(path, "de.png", ocr=OcrOptions(languages="deu"))
    assert {"größere", "übergänge", "später", "gründlich"} <= _words(doc.text), doc.text
    assert doc.ocr is not None and doc.ocr.languages == "deu"
    with pytest.raises(
        UnsupportedFileError,
        match=r"^OCR language\(s\) zzz not installed on this worker \(Debian package\(s\) "
        r"tesseract-ocr-zzz\); installed: eng, deu, fra, spa",
    ):
        parse_file(path, "de.png", ocr=OcrOptions(languages="deu+zzz"))
    with pytest.raises(UnsupportedFileError, match="is not a list of Tesseract language codes"):
        parse_file(path, "de.png", ocr=OcrOptions(languages="../../etc/passwd"))


@needs_corpus
def test_bad_languages_do_not_fail_a_pdf_that_needs_no_ocr() -> None:
    doc = parse_file(CORPUS / "minimal-document.pdf", "m.pdf", ocr=OcrOptions(languages="zzz"))
    assert doc.text and doc.ocr is None


def test_missing_tesseract_data_names_what_to_install(tmp_path: Path) -> None:
    path = _write(tmp_path, "scan.png", encode(text_page(QUARTERMASTER), "PNG"))
    missing = OcrOptions(tessdata_dir=tmp_path / "no-tessdata")
    with pytest.raises(
        UnsupportedFileError,
        match=r"^OCR is not available on this worker: no Tesseract language data in .*no-tessdata "
        r"\(PREPSHELF_OCR_TESSDATA_DIR\); install the Debian packages tesseract-ocr and "
        r"tesseract-ocr-eng",
    ):
        parse_file(path, "scan.png", ocr=missing)


def test_missing_binding_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tesserocr", None)  # `import tesserocr` raises ImportError
    path = _write(tmp_path, "scan.png", encode(text_page(QUARTERMASTER), "PNG"))
    with pytest.raises(
        UnsupportedFileError,
        match=r"^OCR is not available on this worker: the Python package tesserocr is missing "
        r"\(pip install tesserocr==2\.13\.0\)$",
    ):
        parse_file(path, "scan.png", ocr=ENG)


@needs_corpus
def test_ocr_switched_off(tmp_path: Path) -> None:
    off = OcrOptions(enabled=False)
    with pytest.raises(InvalidFileError, match="no text layer, and OCR is off on this worker"):
        parse_file(CORPUS / "bad" / "loremipsum-flat.pdf", "lorem.pdf", ocr=off)
    path = _write(tmp_path, "scan.png", encode(text_page(QUARTERMASTER), "PNG"))
    with pytest.raises(UnsupportedFileError, match=r"^PNG images are read by OCR, which is off"):
        parse_file(path, "scan.png", ocr=off)


def test_languages_come_from_file_then_store_then_setting() -> None:
    settings = Settings(ocr_languages="eng")
    file_says, store_says = {"ocr_languages": "deu"}, {"ocr_languages": "fra"}
    assert requested_languages(settings, file_says, store_says) == "deu"
    assert requested_languages(settings, {"topic": "x"}, {"ocr_languages": "fra"}) == "fra"
    assert requested_languages(settings, None, {"ocr_languages": " "}) == "eng"
    assert requested_languages(Settings(), None, None) is None


def test_default_languages_are_the_installed_ones_english_first() -> None:
    from prepshelf.pipeline.ocr import default_languages, find_tessdata

    installed = installed_languages(find_tessdata(None))
    assert default_languages(installed)[0] == "eng"
    assert set(default_languages(installed)) == installed - {"osd", "equ"}


# --- sandbox: progress and cancel -----------------------------------------------------------


def test_progress_crosses_the_sandbox_and_a_raising_callback_stops_the_child(
    tmp_path: Path,
) -> None:
    pages = [text_page(QUARTERMASTER), text_page(ZEPHYR), text_page(INVOICE)]
    path = _write(tmp_path, "three.tif", tiff_pages(*pages))
    seen: list[tuple[int, int]] = []
    doc = parse_in_subprocess(
        path,
        "three.tif",
        timeout_s=120,
        memory_limit_bytes=LIMIT,
        ocr=ENG,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [s.page for s in doc.page_spans] == [1, 2, 3] and doc.ocr is not None

    class Stop(Exception):
        pass

    def stop_after_first(done: int, total: int) -> None:
        if done >= 1:
            raise Stop()

    with pytest.raises(Stop):
        parse_in_subprocess(
            path,
            "three.tif",
            timeout_s=120,
            memory_limit_bytes=LIMIT,
            ocr=ENG,
            on_progress=stop_after_first,
        )
    again = parse_in_subprocess(path, "three.tif", timeout_s=120, memory_limit_bytes=LIMIT, ocr=ENG)
    assert again.text == doc.text  # a fresh child took over


# --- chunk attributes -----------------------------------------------------------------------


def test_chunk_attributes_follow_pages() -> None:
    spans = (
        PageSpan(1, 0, 100),
        PageSpan(2, 102, 200, ocr=True, confidence=88.4),
        PageSpan(4, 202, 300, ocr=True, confidence=61.6),
    )
    assert chunk_attributes((), 0, 10) is None
    assert chunk_attributes(spans, 0, 50) == {"page": 1, "page_end": 1, "ocr": False}
    assert chunk_attributes(spans, 90, 150) == {
        "page": 1,
        "page_end": 2,
        "ocr": True,
        "ocr_confidence": 88,
    }
    assert chunk_attributes(spans, 150, 300) == {
        "page": 2,
        "page_end": 4,
        "ocr": True,
        "ocr_confidence": 62,
    }
    assert chunk_attributes(spans, 101, 120)["page"] == 2  # type: ignore[index]
