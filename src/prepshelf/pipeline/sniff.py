"""Detect what a file really is from its bytes; the extension only breaks ties among text kinds."""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

from prepshelf.errors import InvalidFileError, UnsupportedFileError
from prepshelf.pipeline.formats.text import (
    BINARY_MESSAGE,
    bom_encoding,
    bomless_utf16_32,
    looks_like_utf8_with_stray_nuls,
)
from prepshelf.pipeline.media_sniff import IMAGE_BRANDS, MEDIA_KINDS, media_kind

IMAGE_KINDS = frozenset({"png", "jpeg", "tiff", "webp", "bmp", "gif"})  # read by OCR
KINDS = frozenset(
    {"pdf", "docx", "pptx", "xlsx", "zip", "tar", "gzip", "bzip2", "xz"}
    | {"html", "markdown", "csv", "json", "text"}
    | IMAGE_KINDS
    | MEDIA_KINDS  # transcribed (media.py, transcript.py)
)
ARCHIVE_KINDS = frozenset({"zip", "tar", "gzip", "bzip2", "xz"})

_HEAD_BYTES = 8192
_TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".csv", ".tsv", ".json", ".log"})
_TEXT_SUFFIXES |= {".html", ".htm", ".xhtml", ".jsonl", ".ndjson"}

_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)
# BMP has a two-letter magic that text can start with: its header must add up as well.
_BMP_INFO_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

# (magic prefix, description) for formats we recognise but do not read.
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\x01\x00", "a Windows icon"),
    (b"\x7fELF", "an ELF executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Java class / Mach-O binary"),
    (b"\x00asm", "a WebAssembly module"),
    (b"7z\xbc\xaf'\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"(\xb5/\xfd", "a Zstandard-compressed file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file (.doc/.xls/.ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
)
_WEAK_MAGIC = ((b"MZ", "a Windows executable"),)

_OOXML_MEMBERS = (
    ("word/document.xml", "docx"),
    ("ppt/presentation.xml", "pptx"),
    ("xl/workbook.xml", "xlsx"),
)
_OOXML_CONTENT_TYPES = (
    ("wordprocessingml.", "docx"),
    ("ms-word.", "docx"),
    ("presentationml.", "pptx"),
    ("ms-powerpoint.", "pptx"),
    ("spreadsheetml.", "xlsx"),
    ("ms-excel.", "xlsx"),
)
_HTML_START = re.compile(
    r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
    re.IGNORECASE | re.DOTALL,
)
_ANY_TAG = re.compile(r"<[a-zA-Z!/][^>]*>")


def sniff_file(path: Path, filename: str) -> str:
    """Return the kind of the file at `path` (one of KINDS) judged by content.

    Raises InvalidFileError for an empty or broken container and UnsupportedFileError for a
    recognised non-document format or binary content. `filename` is the name the user gave.
    """
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if not head:
        raise InvalidFileError("empty file (0 bytes)")
    suffix = Path(filename).suffix.lower()
    if bom_encoding(head):
        return _text_kind(head, suffix)
    # Archives first: a tar's first member may well be a PDF whose header sits within 1 KB.
    kind = _compressed_or_tar(head)
    if kind:
        return kind
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path)
    image = _image_kind(head)
    if image:
        return image
    media = media_kind(head)
    if media:
        return media
    if b"%PDF-" in head[:1024]:
        return "pdf"
    _refuse_known_binary(head, suffix)
    if b"\0" in head:
        if tarfile.is_tarfile(path):
            return "tar"
        if not (bomless_utf16_32(head) or looks_like_utf8_with_stray_nuls(head)):
            raise UnsupportedFileError(BINARY_MESSAGE)
    return _text_kind(head, suffix)


def _image_kind(head: bytes) -> str | None:
    kind = next((kind for magic, kind in _IMAGE_MAGIC if head.startswith(magic)), None)
    if kind:
        return kind
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and head[6:10] == b"\0\0\0\0"  # reserved fields
        and int.from_bytes(head[14:18], "little") in _BMP_INFO_SIZES
    ):
        return "bmp"
    return None


def _compressed_or_tar(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if re.match(rb"BZh[1-9]1AY&SY", head):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _refuse_known_binary(head: bytes, suffix: str) -> None:
    what = next((desc for magic, desc in _BINARY_MAGIC if head.startswith(magic)), None)
    if what is None and head.startswith(b"RIFF"):
        what = "a RIFF media file"
    if what is None and b"\0" in head:
        # Short magics that plain text could start with count only in binary-looking content.
        what = next((desc for magic, desc in _WEAK_MAGIC if head.startswith(magic)), None)
    if what is None and head[4:8] == b"ftyp" and head[8:12] in IMAGE_BRANDS:
        what = "a HEIF/AVIF image (convert it to PNG or JPEG)"
    if what is not None:
        # Name what the user probably expected, e.g. "a PNG image, not a document".
        expected = "text" if suffix in _TEXT_SUFFIXES else "a document"
        raise UnsupportedFileError(f"content is {what}, not {expected}")


def _zip_kind(path: Path) -> str:
    """Office Open XML files are ZIPs; tell them apart by their members (central directory only)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for member, kind in _OOXML_MEMBERS:
                if member in names:
                    return kind
            content_types = _small_member(zf, "[Content_Types].xml")
            mimetype = _small_member(zf, "mimetype")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InvalidFileError(f"corrupt ZIP container: {exc}") from exc
    for marker, kind in _OOXML_CONTENT_TYPES:
        if f"application/vnd.openxmlformats-officedocument.{marker}" in content_types or (
            f"application/vnd.{marker}" in content_types
        ):
            return kind
    if mimetype.startswith("application/vnd.oasis.opendocument"):
        raise UnsupportedFileError(
            "content is an OpenDocument file (ODT/ODS/ODP), not supported; save it as DOCX/PPTX"
        )
    if mimetype.startswith("application/epub"):
        raise UnsupportedFileError("content is an EPUB e-book, not supported yet")
    return "zip"


def _small_member(zf: zipfile.ZipFile, name: str) -> str:
    """A member's text if it exists and is small (never inflate a possible bomb)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        return ""
    if info.file_size > 1 << 20:
        return ""
    return zf.read(info).decode("utf-8", errors="replace")


def _text_kind(head: bytes, suffix: str) -> str:
    encoding = bom_encoding(head) or bomless_utf16_32(head) or "utf-8"
    sample = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if _HTML_START.match(sample):
        return "html"
    if suffix in (".html", ".htm", ".xhtml"):
        return "html" if _ANY_TAG.search(sample) else "text"
    if suffix in (".md", ".markdown", ".mdown", ".mkd"):
        return "markdown"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".json", ".jsonl", ".ndjson"):
        return "json"
    return "text"
