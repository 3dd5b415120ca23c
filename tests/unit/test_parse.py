"""parse_file over the real dev corpus plus synthetic hostile inputs."""

from __future__ import annotations

import csv
import gzip
import zipfile
from pathlib import Path

import pytest

from prepshelf.errors import FileProcessingError, InvalidFileError, UnsupportedFileError
from prepshelf.pipeline.formats.html import html_to_text
from prepshelf.pipeline.parse import ArchiveFileError, normalise_text, parse_file
from support.corpus import CORPUS, needs_corpus

ARCHIVE_TYPES = {"zip", "tar"}


def _manifest() -> list[dict[str, str]]:
    if not (CORPUS / "MANIFEST.tsv").is_file():
        return []
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


_ROWS = _manifest()
_GOOD = [r for r in _ROWS if not r["path"].startswith("bad/") and r["type"] not in ARCHIVE_TYPES]
_ARCHIVES = [r for r in _ROWS if r["type"] in ARCHIVE_TYPES]


@needs_corpus
def test_manifest_has_the_documented_files() -> None:
    assert len(_ROWS) == 73
    assert len(_GOOD) == 55


@needs_corpus
@pytest.mark.parametrize("row", _GOOD, ids=lambda row: row["path"])
def test_every_good_file_yields_text(row: dict[str, str]) -> None:
    path = CORPUS / row["path"]
    doc = parse_file(path, path.name)
    assert doc.kind == row["type"]
    assert doc.text.strip()
    assert "\x00" not in doc.text and "\r" not in doc.text
    assert "\n\n\n" not in doc.text and "  " not in doc.text


# (file, substrings that must appear) — checked by eye against the documents.
_EXPECTED_TEXT = {
    "example-steelJIS-datasheet-utf-16.html": ["SteelJIS: Japanese Steels and Alloys", "日本語"],
    "fake-html-cp1252.html": ["Die schöne Frau", "15,50 €", "L'été était très chaud"],
    "umlauts-non-utf8.md": ["## können", "äöüß"],
    "fake-text-utf-32.txt": ["This is a test document to use for unit tests.", "Doylestown, PA"],
    "fake-text-utf-16.txt": ["Hamburgers are delicious"],
    "copy-protected.pdf": ["LayoutParser: A Unified Toolkit for Deep"],
    "r3-empty-password.pdf": ["pdf encryption test"],
    "shifted-xref-offsets.pdf": ["Beautiful is better than ugly.", "Flat is better than nested."],
    "korean-text-with-tables.pdf": ["적립 제외 대상", "삼성카드"],
    "multilang.pdf": ["Привет, мир", "こんにちは世界"],
    "sample-presentation.pptx": ["Title Slide", "This one is a sub-sub-bullet", "1 A1 B1 C1"],
    "fake-power-point.pptx": ["Adding a Bullet Slide", "Here is some text in a text box!"],
    "docx-tables.docx": ["Header Col 1 Header Col 2", "Nested Table", "g&t h i"],
    "docx-hdrftr.docx": ["First header para", "Main document", "para2"],
    "hdr-header-footer.docx": ["Header for section-1", "Footer for section 1"],
    "handbook-872p.docx": ["Handbook for\nChapter 13\nStanding Trustees"],
    "example-10k.html": ["ANNUAL REPORT PURSUANT TO SECTION 13", "Galaxy Gaming, Inc."],
    "fake-html-pre.htm": ["[107th Congress Public Law 56]\n[From the U.S. Government"],
    "stanley-cups-with-emoji.csv": ["Maple Leafs,TOR,13"],
}


@needs_corpus
@pytest.mark.parametrize(("name", "snippets"), _EXPECTED_TEXT.items(), ids=list(_EXPECTED_TEXT))
def test_interesting_files_have_their_text(name: str, snippets: list[str]) -> None:
    text = parse_file(CORPUS / name, name).text
    for snippet in snippets:
        assert snippet in text


@needs_corpus
def test_metadata_pages_and_encodings() -> None:
    assert parse_file(CORPUS / "pdf2image-memory-error-test-400p.pdf", "x.pdf").pages == 400
    assert parse_file(CORPUS / "sample-presentation.pptx", "x.pptx").pages == 4
    assert parse_file(CORPUS / "fake-text-utf-32.txt", "x.txt").encoding == "utf-32"
    assert parse_file(CORPUS / "example-steelJIS-datasheet-utf-16.html", "x.html").encoding == (
        "utf-16"
    )
    assert parse_file(CORPUS / "fake-html-cp1252.html", "x.html").encoding == "cp1252"


@needs_corpus
def test_script_style_and_hidden_xbrl_are_dropped() -> None:
    scripts = parse_file(CORPUS / "example-with-scripts.html", "x.html").text
    assert "function(" not in scripts and "{display:" not in scripts.replace(" ", "")
    tenk = parse_file(CORPUS / "example-10k.html", "x.html").text
    assert "AccountsReceivableMember" not in tenk  # only in the hidden ix:header


@needs_corpus
def test_large_documents_parse_in_full() -> None:
    # How long they take is measured by bench/parse_large.py, never asserted here.
    for name in ("handbook-872p.docx", "pdf2image-memory-error-test-400p.pdf"):
        assert len(parse_file(CORPUS / name, name).text) > 300_000


_BAD = {
    "bad/libreoffice-writer-password.pdf": (InvalidFileError, "^encrypted PDF: a user password"),
    "bad/r2-user-password.pdf": (InvalidFileError, "^encrypted PDF"),
    "bad/r4-aes-user-password.pdf": (InvalidFileError, "^encrypted PDF"),
    "bad/pdflatex-outline-truncated.pdf": (InvalidFileError, "^corrupt PDF: "),
    "bad/mangled-utf8-roundtrip.pdf": (InvalidFileError, "^corrupt PDF: "),
    "bad/empty.pdf": (InvalidFileError, r"^empty file \(0 bytes\)$"),
    # Since OCR (issue 15): a 16×16 smiley PNG named .pdf is read as the image it is, and holds
    # no text; the CCITT "scan" is the same smiley as a fax image in a 3.84 pt PDF page.
    # bad/loremipsum-flat.pdf, a real scan, now parses (test_ocr.py, test_scans.py).
    "bad/smile.pdf": (InvalidFileError, r"^no text found by OCR \(1 page\(s\) OCR'd with eng"),
    # Audio and video are transcribed, not parsed, since issue 16 (MediaFileError).
    "bad/CantinaBand3.txt": (
        UnsupportedFileError,
        "^content is WAV audio: audio and video are transcribed, not parsed",
    ),
    "bad/imagemagick-CCITTFaxDecode.pdf": (
        InvalidFileError,
        r"^no text found by OCR \(1 page\(s\) OCR'd with eng",
    ),
    "bad/doc-word-default-blank.docx": (InvalidFileError, r"^no extractable text \(the document"),
    "bad/fake-text-all-whitespace.txt": (InvalidFileError, "^no extractable text"),
}


# Bad files of the corpus that parse since OCR: the lorem ipsum scan has no text layer.
_NOW_GOOD = {"bad/loremipsum-flat.pdf"}


@needs_corpus
def test_bad_table_covers_every_bad_non_zip_file() -> None:
    on_disk = {f"bad/{p.name}" for p in (CORPUS / "bad").iterdir() if p.suffix != ".zip"}
    assert on_disk == set(_BAD) | _NOW_GOOD


@needs_corpus
@pytest.mark.parametrize(("name", "expected"), _BAD.items(), ids=list(_BAD))
def test_bad_files_fail_precisely(name: str, expected: tuple[type[Exception], str]) -> None:
    error_class, pattern = expected
    with pytest.raises(error_class, match=pattern) as info:
        parse_file(CORPUS / name, Path(name).name)
    assert Path(name).name not in str(info.value)  # the caller adds the file name


@needs_corpus
@pytest.mark.parametrize("row", _ARCHIVES, ids=lambda row: row["path"])
def test_archives_are_expanded_not_parsed(row: dict[str, str]) -> None:
    with pytest.raises(ArchiveFileError, match=r"archives are expanded into their members"):
        parse_file(CORPUS / row["path"], Path(row["path"]).name)


# --- synthetic cases ------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_normalise_text() -> None:
    raw = "\ufeff  a\x00b\r\nc \t d  \r\r\r\r e\x0bf\x0cg\x07 \n\n\n\n\nh  "
    assert normalise_text(raw) == "ab\nc d\n\ne\nf\ng\n\nh"
    assert normalise_text("\ud800 lone surrogate") == "? lone surrogate"


def test_deeply_nested_html_does_not_recurse(tmp_path: Path) -> None:
    depth = 50_000
    markup = "<html><body><p>before</p>" + "<div>" * depth + "deep text" + "</div>" * depth
    markup += "<script>var hidden = 1;</script><p>after</p></body></html>"
    doc = parse_file(_write(tmp_path, "deep.html", markup.encode()), "deep.html")
    assert doc.text == "before\n\ndeep text\n\nafter"


def test_nested_html_within_libxml2_depth() -> None:
    markup = "<html><body>" + "<div>" * 1500 + "x" + "</div>" * 1500 + "<p>y</p></body></html>"
    assert html_to_text(markup).split() == ["x", "y"]


def test_html_blocks_cells_hidden_and_pre() -> None:
    markup = """<!DOCTYPE html><html><head><title>Page title</title><style>p{x:y}</style>
    <meta name="x" content="meta junk"></head><body>
    <div>one</div><div>two</div><p>three<br>four</p><ul><li>five</li><li>six</li></ul>
    <table><tr><td>c1</td><td>c2</td></tr><tr><th>c3</th><td>c4</td></tr></table>
    <ix:header><ix:hidden>xbrl junk</ix:hidden></ix:header>
    <span style="DISPLAY: none">hidden junk</span><noscript>noscript junk</noscript>
    <template>template junk</template><script>script junk</script>
    <pre>line 1
line 2</pre>in<b>line</b> text &amp; entity</body></html>"""
    text = normalise_text(html_to_text(markup))
    lines = [line for line in text.split("\n") if line]
    assert lines[:6] == ["Page title", "one", "two", "three", "four", "five"]
    assert "c1 c2" in lines and "c3 c4" in lines
    assert "junk" not in text
    assert "line 1\nline 2" in text
    assert lines[-1] == "inline text & entity"


def test_stray_nuls_in_utf8_text_are_stripped(tmp_path: Path) -> None:
    # Policy: a few NULs (<= 2 % of the bytes) in otherwise valid UTF-8 are corruption and
    # removed; more NULs, or NULs among non-UTF-8 bytes, mean binary and are refused.
    data = ("Grüße aus Köln. " * 300).encode() + b"\x00\x00\x00" + b"Ende."
    doc = parse_file(_write(tmp_path, "nuls.txt", data), "nuls.txt")
    assert "\x00" not in doc.text and doc.text.endswith("Köln. Ende.")
    assert doc.encoding == "utf-8"
    binary = b"abc\x00\x01\x02\xff\xfe" * 2000
    with pytest.raises(UnsupportedFileError, match=r"^binary content: not a text file"):
        parse_file(_write(tmp_path, "blob.txt", binary), "blob.txt")


def test_nuls_after_the_sniffed_head_are_still_judged(tmp_path: Path) -> None:
    data = b"plain text header\n" * 600 + b"\x00\x01\x02\x03" * 5000
    with pytest.raises(UnsupportedFileError, match="NUL bytes"):
        parse_file(_write(tmp_path, "late.txt", data), "late.txt")


def test_enormous_single_line(tmp_path: Path) -> None:
    data = b"word " * (1024 * 1024)  # 5 MiB, no newline
    doc = parse_file(_write(tmp_path, "line.txt", data), "line.txt")
    assert len(doc.text) == len(data) - 1 and "\n" not in doc.text


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    doc = parse_file(_write(tmp_path, "bom.md", "\ufeff# Überschrift\n".encode()), "bom.md")
    assert (doc.text, doc.kind, doc.encoding) == ("# Überschrift", "markdown", "utf-8")


def test_bomless_utf16(tmp_path: Path) -> None:
    data = "Zeile eins\nZeile zwei mit ä\n".encode("utf-16-le")
    doc = parse_file(_write(tmp_path, "u16.txt", data), "u16.txt")
    assert (doc.text, doc.encoding) == ("Zeile eins\nZeile zwei mit ä", "utf-16-le")


def test_html_meta_charset_that_lies(tmp_path: Path) -> None:
    markup = (
        '<html><head><meta charset="utf-8"></head><body>'
        "<p>Die schöne Frau zahlte 15,50 € für Kaffee und Kuchen – köstlich!</p></body></html>"
    )
    doc = parse_file(_write(tmp_path, "lie.html", markup.encode("cp1252")), "lie.html")
    assert doc.text == "Die schöne Frau zahlte 15,50 € für Kaffee und Kuchen – köstlich!"
    assert doc.encoding == "cp1252"


def test_html_meta_charset_is_used_when_bytes_are_not_utf8(tmp_path: Path) -> None:
    markup = '<html><head><meta charset="koi8-r"></head><body><p>Привет, мир</p></body></html>'
    doc = parse_file(_write(tmp_path, "koi.html", markup.encode("koi8-r")), "koi.html")
    assert (doc.text, doc.encoding) == ("Привет, мир", "koi8-r")


def test_xml_declaration_in_xhtml(tmp_path: Path) -> None:
    markup = '<?xml version="1.0" encoding="utf-8"?>\n<html><body><p>XHTML text</p></body></html>'
    assert parse_file(_write(tmp_path, "x.xhtml", markup.encode()), "x.xhtml").text == "XHTML text"


def test_unsupported_and_broken_containers(tmp_path: Path) -> None:
    xlsx = tmp_path / "book.xlsx"
    with zipfile.ZipFile(xlsx, "w") as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(UnsupportedFileError, match="XLSX files are not supported yet"):
        parse_file(xlsx, "book.xlsx")
    with pytest.raises(ArchiveFileError, match=r"^GZIP archives are expanded into their"):
        parse_file(_write(tmp_path, "a.txt.gz", gzip.compress(b"hello")), "a.txt.gz")
    docx = tmp_path / "broken.docx"
    with zipfile.ZipFile(docx, "w") as zf:
        zf.writestr("word/document.xml", "<not really")
    with pytest.raises(InvalidFileError, match=r"^corrupt or unreadable DOCX: ") as info:
        parse_file(docx, "broken.docx")
    assert len(str(info.value)) < 300


def test_errors_are_file_processing_errors(tmp_path: Path) -> None:
    with pytest.raises(FileProcessingError):
        parse_file(_write(tmp_path, "empty.txt", b""), "empty.txt")
