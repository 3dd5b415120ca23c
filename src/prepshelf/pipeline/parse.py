"""The parse stage: bytes on disk -> normalised plain text, or a precise FileProcessingError.

Pure and synchronous; run it through `sandbox.parse_in_subprocess` for untrusted files
(PDFium is native code and not thread-safe; hostile files can exhaust memory or hang).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from prepshelf.errors import FileProcessingError, InvalidFileError, UnsupportedFileError
from prepshelf.pipeline.formats import Extracted, PageText
from prepshelf.pipeline.formats.html import extract_html
from prepshelf.pipeline.formats.image import IMAGE_FORMATS, extract_image, label
from prepshelf.pipeline.formats.office import extract_docx, extract_pptx
from prepshelf.pipeline.formats.pdf import extract_pdf
from prepshelf.pipeline.formats.text import extract_text
from prepshelf.pipeline.media_sniff import MEDIA_KINDS, MEDIA_LABELS
from prepshelf.pipeline.ocr import OcrOptions
from prepshelf.pipeline.ocr_run import OcrContext, OcrReport, ProgressCallback
from prepshelf.pipeline.pages import PageSpan
from prepshelf.pipeline.sniff import ARCHIVE_KINDS, sniff_file


class ArchiveFileError(UnsupportedFileError):
    """The file is an archive: not parsed, but expanded into member files by the ingest job."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind.upper()} archives are expanded into their members, not parsed")
        self.kind = kind

    def __reduce__(self) -> tuple[type[ArchiveFileError], tuple[str]]:
        return (type(self), (self.kind,))  # crosses the sandbox pipe as ArchiveFileError(kind)


class MediaFileError(UnsupportedFileError):
    """The file is audio or video: not parsed, but transcribed through an upstream model.

    The ingest job turns it into segments (media.py) sent to a model serving
    /v1/audio/transcriptions; without one configured, this message is the file's error.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"content is {MEDIA_LABELS[kind]}: audio and video are transcribed, not parsed, "
            "which needs a model serving /v1/audio/transcriptions in the upstream "
            "configuration (docs/upstreams.md)"
        )
        self.kind = kind

    def __reduce__(self) -> tuple[type[MediaFileError], tuple[str]]:
        return (type(self), (self.kind,))  # crosses the sandbox pipe as MediaFileError(kind)


@dataclass(frozen=True)
class ParsedDocument:
    text: str  # extracted text, NUL-free, normalised whitespace
    kind: str  # the sniffed kind
    pages: int | None  # PDF/PPTX/image page/slide count where known
    encoding: str | None  # detected text encoding for text kinds
    page_spans: tuple[PageSpan, ...] = ()  # paged kinds: where each page's text lies in `text`
    ocr: OcrReport | None = None  # what OCR did, when any page went through it


_EXTRACTORS: dict[str, Callable[[Path], Extracted]] = {
    "docx": extract_docx,
    "pptx": extract_pptx,
    "html": extract_html,
    "markdown": extract_text,
    "text": extract_text,
    "csv": extract_text,
    "json": extract_text,
}
_BLANK = "no extractable text (the document is blank or whitespace only)"
_MAX_ERROR_DETAIL = 200


def parse_file(
    path: Path,
    filename: str,
    *,
    ocr: OcrOptions | None = None,
    progress: ProgressCallback | None = None,
) -> ParsedDocument:
    """Extract the text of the file at `path`; `filename` is the user's name for it.

    Scanned PDF pages and images are read by OCR under `ocr` (defaults: every installed
    language, the default limits); `progress(done, total)` hears of each OCR'd page.
    Raises UnsupportedFileError for types we do not read and InvalidFileError for broken,
    empty, encrypted or text-less files. Messages never contain the file name.
    """
    kind = sniff_file(path, filename)
    if kind in ARCHIVE_KINDS:
        raise ArchiveFileError(kind)
    if kind in MEDIA_KINDS:
        raise MediaFileError(kind)
    context = OcrContext(ocr or OcrOptions(), progress)
    if kind == "pdf":
        extractor: Callable[[Path], Extracted] | None = partial(extract_pdf, ctx=context)
    elif kind in IMAGE_FORMATS:
        extractor = partial(extract_image, kind=kind, ctx=context)
    else:
        extractor = _EXTRACTORS.get(kind)
    if extractor is None:
        raise UnsupportedFileError(f"{kind.upper()} files are not supported yet")
    try:
        extracted = extractor(path)
    except (FileProcessingError, MemoryError):
        raise  # already precise / the sandbox reports memory exhaustion itself
    except Exception as exc:
        detail = str(exc)[:_MAX_ERROR_DETAIL]
        message = f"corrupt or unreadable {label(kind)}: {type(exc).__name__}: {detail}"
        raise InvalidFileError(message) from exc
    if extracted.page_texts is not None:
        text, spans = join_pages(extracted.page_texts)
    else:
        text, spans = normalise_text(extracted.text), ()
    if not text:
        raise InvalidFileError(extracted.empty_reason or _BLANK)
    if _mostly_unbroken_runs(text):
        raise InvalidFileError(_UNBROKEN)
    return ParsedDocument(
        text=text,
        kind=kind,
        pages=extracted.pages,
        encoding=extracted.encoding,
        page_spans=spans,
        ocr=extracted.ocr,
    )


def join_pages(pages: Sequence[PageText]) -> tuple[str, tuple[PageSpan, ...]]:
    """Normalised page texts joined by a blank line, and each page's span in the result
    (blank pages get no span)."""
    parts: list[str] = []
    spans: list[PageSpan] = []
    position = 0
    for page in pages:
        text = normalise_text(page.text)
        if not text:
            continue
        if parts:
            parts.append("\n\n")
            position += 2
        parts.append(text)
        spans.append(PageSpan(page.page, position, position + len(text), page.ocr, page.confidence))
        position += len(text)
    return "".join(parts), tuple(spans)


# No language has words this long; such runs are one tokenizer [UNK] and one giant chunk.
_LONG_RUN = 10_000
_WORD = re.compile(r"[^\W_]+")
_UNBROKEN = (
    f"no extractable text (the content is unbroken runs of over {_LONG_RUN:,} letters, not words)"
)


def _mostly_unbroken_runs(text: str) -> bool:
    """True when over half the text is letter runs longer than _LONG_RUN (linear scan)."""
    if len(text) < _LONG_RUN:
        return False
    long_runs = sum(len(m) for m in map(re.Match.group, _WORD.finditer(text)) if len(m) > _LONG_RUN)
    return long_runs * 2 > len(text)


_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# C0 controls except \t and \n (\r, \v, \f are line breaks by now), DEL, stray BOMs and
# non-characters.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufeff\ufffe\uffff]")
_BLANKS = re.compile(r"[ \t]+")
_EDGE_SPACE = re.compile(r" ?\n ?")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalise_text(text: str) -> str:
    """Canonical whitespace: \\n line ends, single spaces, at most one blank line, no controls."""
    # Lone surrogates (from lenient decoders) would break UTF-8 encoding downstream.
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    text = _CONTROLS.sub("", _LINE_BREAKS.sub("\n", text))
    text = _EDGE_SPACE.sub("\n", _BLANKS.sub(" ", text))
    return _MANY_NEWLINES.sub("\n\n", text).strip()
