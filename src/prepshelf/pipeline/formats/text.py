"""Byte decoding for text kinds (plain text, Markdown, CSV, JSON, and HTML's bytes)."""

from __future__ import annotations

import codecs
from pathlib import Path

import charset_normalizer

from prepshelf.errors import UnsupportedFileError
from prepshelf.pipeline.formats import Extracted

# UTF-32 BOMs must be tested before UTF-16: FF FE 00 00 starts with the UTF-16-LE BOM.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# More NULs than this (share of bytes) in a non-UTF-16/32 file means binary, not stray corruption.
MAX_NUL_RATIO = 0.02

BINARY_MESSAGE = "binary content: not a text file (NUL bytes found)"


def bom_encoding(data: bytes) -> str | None:
    """The codec named by a leading byte-order mark, if any."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def _share_of_nuls(sample: bytes, offset: int, step: int) -> float:
    picked = sample[offset::step]
    return picked.count(0) / len(picked) if picked else 0.0


def _decodes(sample: bytes, encoding: str) -> bool:
    """Strictly decodable, tolerating a multi-byte sequence cut at the end of the sample."""
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def bomless_utf16_32(head: bytes) -> str | None:
    """Recognise UTF-16/32 without a BOM from where its NUL bytes sit."""
    sample = head[: len(head) - len(head) % 4]
    if len(sample) < 8:
        return None
    candidates: list[str] = []
    if _share_of_nuls(sample, 2, 4) > 0.95 and _share_of_nuls(sample, 3, 4) > 0.95:
        candidates.append("utf-32-le")
    if _share_of_nuls(sample, 0, 4) > 0.95 and _share_of_nuls(sample, 1, 4) > 0.95:
        candidates.append("utf-32-be")
    odd, even = _share_of_nuls(sample, 1, 2), _share_of_nuls(sample, 0, 2)
    if odd > 0.5 and even < 0.1:
        candidates.append("utf-16-le")
    if even > 0.5 and odd < 0.1:
        candidates.append("utf-16-be")
    return next((enc for enc in candidates if _decodes(sample, enc)), None)


def looks_like_utf8_with_stray_nuls(head: bytes) -> bool:
    """Few NULs and valid UTF-8 around them: corruption we strip, not a binary file."""
    if head.count(0) > MAX_NUL_RATIO * len(head):
        return False
    return _decodes(head.replace(b"\0", b""), "utf-8")


def _charset_normalizer_guess(data: bytes) -> str | None:
    results = charset_normalizer.from_bytes(data)
    best = results.best()
    if best is None:
        return None
    # Short Western texts tie between cp1250/cp1252/latin-1; cp1252 is by far the most common
    # legacy encoding (and what browsers use for "latin-1"), so it wins equally clean ties.
    for match in results:
        if match.chaos <= best.chaos + 0.001 and "cp1252" in match.could_be_from_charset:
            return "cp1252"
    return str(best.encoding)


def _usable_declared(declared: str | None) -> str | None:
    if not declared:
        return None
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        return None
    # A declared UTF-16/32 without a BOM is almost always a lie (browsers ignore it too).
    if name.startswith(("utf-16", "utf-32")):
        return None
    return "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode text bytes: BOM, BOM-less UTF-16/32, strict UTF-8, declared, guessed, cp1252.

    Returns (text, encoding). A declared charset (HTML <meta>) only counts after the bytes
    themselves (BOM, valid UTF-8) had their say, because declarations often lie.
    """
    encoding = bom_encoding(data) or bomless_utf16_32(data[:8192])
    if encoding:
        return data.decode(encoding, errors="replace"), encoding.removesuffix("-sig")
    if data.count(0) > MAX_NUL_RATIO * len(data):
        raise UnsupportedFileError(BINARY_MESSAGE)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    declared_codec = _usable_declared(declared)
    if declared_codec and declared_codec != "utf-8":
        try:
            return data.decode(declared_codec), declared_codec
        except UnicodeDecodeError:
            pass
    guess = _charset_normalizer_guess(data) or "cp1252"
    try:
        return data.decode(guess), guess
    except (UnicodeDecodeError, LookupError):
        # cp1252 leaves 5 bytes undefined; latin-1 maps every byte.
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            return data.decode("latin-1"), "latin-1"


def extract_text(path: Path) -> Extracted:
    """Plain text, Markdown, CSV and JSON: the decoded bytes as they are."""
    text, encoding = decode_bytes(path.read_bytes())
    return Extracted(text=text, encoding=encoding)
