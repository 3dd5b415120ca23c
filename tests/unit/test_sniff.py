"""sniff_file: the kind comes from the bytes, the extension only breaks ties among text kinds."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from prepshelf.errors import InvalidFileError, UnsupportedFileError
from prepshelf.pipeline.sniff import sniff_file
from support.corpus import CORPUS, needs_corpus


def _manifest() -> list[dict[str, str]]:
    if not (CORPUS / "MANIFEST.tsv").is_file():
        return []
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


_PLAIN_KIND_ROWS = [row for row in _manifest() if " " not in row["type"]]


@needs_corpus
@pytest.mark.parametrize("row", _PLAIN_KIND_ROWS, ids=lambda row: row["path"])
def test_corpus_kind_matches_manifest(row: dict[str, str]) -> None:
    path = CORPUS / row["path"]
    assert sniff_file(path, path.name) == row["type"]


@needs_corpus
def test_corpus_renamed_and_empty_files() -> None:
    assert sniff_file(CORPUS / "bad" / "smile.pdf", "smile.pdf") == "png"  # read by OCR
    # Audio is transcribed since issue 16 (media.py): a WAV named .txt is sniffed as the WAV it is.
    assert sniff_file(CORPUS / "bad" / "CantinaBand3.txt", "CantinaBand3.txt") == "wav"
    with pytest.raises(InvalidFileError, match=r"^empty file \(0 bytes\)$"):
        sniff_file(CORPUS / "bad" / "empty.pdf", "empty.pdf")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x00\x00\x01\x00\x01\x00", "Windows icon"),
        (b"\x7fELF\x02\x01\x01\x00", "ELF executable"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "Windows executable"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "HEIF/AVIF image"),  # MP4 brands are media
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "legacy Microsoft Office"),
    ],
)
def test_known_binary_formats_are_named(tmp_path: Path, data: bytes, what: str) -> None:
    with pytest.raises(UnsupportedFileError, match=what):
        sniff_file(_write(tmp_path, "upload.pdf", data + b"\x00" * 64), "upload.pdf")


def test_text_starting_like_a_weak_magic_stays_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "notes.txt", b"MZ is the DOS executable signature.\n")
    assert sniff_file(path, "notes.txt") == "text"


def test_compressed_and_tar(tmp_path: Path) -> None:
    payload = b"hello world\n" * 100
    assert sniff_file(_write(tmp_path, "a.gz", gzip.compress(payload)), "a.txt") == "gzip"
    assert sniff_file(_write(tmp_path, "a.bz2", bz2.compress(payload)), "a.txt") == "bzip2"
    assert sniff_file(_write(tmp_path, "a.xz", lzma.compress(payload)), "a.txt") == "xz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("doc.pdf")
        info.size = len(b"%PDF-1.4\n")
        tar.addfile(info, io.BytesIO(b"%PDF-1.4\n"))
    assert sniff_file(_write(tmp_path, "a.pdf", buffer.getvalue()), "a.pdf") == "tar"


def _zip(tmp_path: Path, name: str, members: dict[str, str]) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members.items():
            zf.writestr(member, text)
    return path


def test_zip_kinds_by_members_and_content_types(tmp_path: Path) -> None:
    assert sniff_file(_zip(tmp_path, "x.zip", {"xl/workbook.xml": "<x/>"}), "x.zip") == "xlsx"
    assert sniff_file(_zip(tmp_path, "p.bin", {"ppt/presentation.xml": ""}), "p.bin") == "pptx"
    content_types = (
        '<Types><Override PartName="/word/main.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
    )
    renamed_part = {"[Content_Types].xml": content_types, "word/main.xml": "<w/>"}
    assert sniff_file(_zip(tmp_path, "d.zip", renamed_part), "d.zip") == "docx"
    assert sniff_file(_zip(tmp_path, "z.docx", {"readme.txt": "hi"}), "z.docx") == "zip"
    odt = {"mimetype": "application/vnd.oasis.opendocument.text"}
    with pytest.raises(UnsupportedFileError, match="OpenDocument"):
        sniff_file(_zip(tmp_path, "o.odt", odt), "o.odt")


def test_broken_zip_is_invalid(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.docx", b"PK\x03\x04" + b"garbage" * 20)
    with pytest.raises(InvalidFileError, match="corrupt ZIP container"):
        sniff_file(path, "broken.docx")


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("page.txt", b"  <!DOCTYPE html><html><body>x</body></html>", "html"),
        ("page.md", b'<?xml version="1.0"?>\n<html xmlns="x"><p>x</p></html>', "html"),
        ("page.htm", b"<p>only a fragment</p>", "html"),
        ("page.html", b"no tags at all", "text"),
        ("notes.markdown", b"# Title\n", "markdown"),
        ("data.CSV", b"a,b\n1,2\n", "csv"),
        ("data.json", b'{"a": 1}', "json"),
        ("noext", b"plain words", "text"),
        ("u16.txt", "UTF-16 without BOM, ünïcödé".encode("utf-16-le"), "text"),
        ("u32.txt", "UTF-32 with BOM".encode("utf-32"), "text"),
    ],
)
def test_text_kinds(tmp_path: Path, name: str, data: bytes, kind: str) -> None:
    assert sniff_file(_write(tmp_path, name, data), name) == kind


def test_nul_policy(tmp_path: Path) -> None:
    # A few stray NULs in valid UTF-8 are corruption, not binary; lots of NULs are binary.
    stray = ("Grüße aus Köln. " * 200).encode() + b"\x00\x00" + b"more text" * 50
    assert sniff_file(_write(tmp_path, "stray.txt", stray), "stray.txt") == "text"
    binary = bytes(range(256)) * 20
    with pytest.raises(UnsupportedFileError, match="NUL bytes"):
        sniff_file(_write(tmp_path, "blob.txt", binary), "blob.txt")


def _image_bytes(fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (40, 20), 255).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        ("PNG", "png"),
        ("JPEG", "jpeg"),
        ("TIFF", "tiff"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("GIF", "gif"),
    ],
)
def test_images_are_documents_sniffed_by_content(tmp_path: Path, fmt: str, kind: str) -> None:
    data = _image_bytes(fmt)
    for name in ("scan.pdf", "scan.txt", "scan"):
        assert sniff_file(_write(tmp_path, name, data), name) == kind


def test_text_starting_with_bm_is_not_a_bitmap(tmp_path: Path) -> None:
    path = _write(tmp_path, "notes.txt", b"BMW and BMX are brands, not bitmap headers.\n" * 3)
    assert sniff_file(path, "notes.txt") == "text"


def test_bigtiff_magic_is_tiff(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.tif", b"II+\x00\x08\x00\x00\x00" + b"\x00" * 64)
    assert sniff_file(path, "big.tif") == "tiff"
