"""Tesseract OCR of one page image, in process through tesserocr, with orientation detection.

It runs in the parse sandbox child (`sandbox.py`): Tesseract is native code, so a crash or a
runaway allocation ends that child, never the worker. Pages reach Tesseract as raw 8-bit grey
pixels (SetImageBytes): Pillow decodes every file, and the image decoders bundled inside the
tesserocr wheel never see user bytes. Recognisers are loaded once per child and language set
and kept, so a warm child OCRs the next file without reloading its models.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from prepshelf.errors import UnsupportedFileError

TESSEROCR_PIN = "tesserocr==2.13.0"
INSTALL_HINT = (
    "install the Debian packages tesseract-ocr and tesseract-ocr-eng (scripts/system-deps.sh) "
    "or set PREPSHELF_OCR_TESSDATA_DIR"
)
_TESSDATA_CANDIDATES = (
    Path("/usr/share/tesseract-ocr/5/tessdata"),
    Path("/usr/share/tesseract-ocr/4.00/tessdata"),
    Path("/usr/share/tessdata"),
    Path("/usr/local/share/tessdata"),
    Path("/opt/homebrew/share/tessdata"),
)
_NOT_LANGUAGES = frozenset({"osd", "equ"})  # orientation/script model; legacy equation model
_LANGUAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]{1,31}")
_SEPARATORS = re.compile(r"[+,\s]+")
_LIST_LANGS = re.compile(r'"([^"]+)"')

# Tesseract's OSD confidence was 11-25 on every truly turned page measured (rendered text turned
# 90/180/270°, a turned journal scan) and 0.4-2.3 on noise and on an upright typewritten scan it
# misread as upside down (bench/ocr.py prints the table): below this a proposed turn is only
# tried when the upright reading is poor.
OSD_MIN_CONFIDENCE = 5.0
# A page recognised below this confidence is tried once more in the other orientation (OSD can
# be wrong either way, or unsure); the more confident reading wins.
RETRY_BELOW_CONFIDENCE = 60.0
MAX_SIDE = 32767  # Tesseract keeps coordinates in 16 bits and refuses larger images
_TURN = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}
_PSM_AUTO = 3  # tesserocr.PSM.AUTO: page segmentation without OSD
_PSM_OSD_ONLY = 0  # tesserocr.PSM.OSD_ONLY
_MAX_RECOGNISERS = 3  # language sets kept loaded per child (each holds its models)


@dataclass(frozen=True)
class OcrOptions:
    """What OCR may do for one file; built from Settings (plus the file's languages) by jobs/."""

    enabled: bool = True
    languages: str | None = None  # "deu+eng"; None = every installed language, eng first
    tessdata_dir: Path | None = None  # None = discovered (TESSDATA_PREFIX, usual places, binary)
    dpi: int = 300
    max_page_pixels: int = 40_000_000
    max_pages: int = 1000
    page_timeout_s: float = 120.0
    timeout_s: float = 3600.0
    min_confidence: float = 50.0  # see docs/ocr.md for the measurements
    page_min_chars: int = 20


@dataclass(frozen=True)
class Engine:
    """A resolved OCR setup: where the models are and which ones this file uses."""

    tessdata: Path
    languages: tuple[str, ...]
    osd: bool  # orientation detection available (Debian tesseract-ocr-osd)

    @property
    def lang(self) -> str:
        return "+".join(self.languages)


@dataclass(frozen=True)
class PageOcr:
    text: str
    confidence: float | None  # mean word confidence weighted by word length; None = no words
    words: int
    rotation: int  # degrees the page was turned counter-clockwise before recognition


class OcrTimeout(Exception):
    """Recognition ran past its deadline (the caller names the limit)."""


def load_engine(options: OcrOptions) -> Engine:
    """Find the language data and check the requested languages; precise errors otherwise."""
    tesserocr_module()  # fail early and clearly when the binding is missing
    tessdata = find_tessdata(options.tessdata_dir)
    installed = installed_languages(tessdata)
    wanted = parse_languages(options.languages) if options.languages else None
    if wanted is None:
        wanted = default_languages(installed)
        if not wanted:
            raise UnsupportedFileError(
                f"OCR is not available on this worker: no language data in {tessdata}; "
                + INSTALL_HINT
            )
    missing = [lang for lang in wanted if lang not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{m.lower().replace('_', '-')}" for m in missing)
        raise UnsupportedFileError(
            f"OCR language(s) {', '.join(missing)} not installed on this worker (Debian "
            f"package(s) {packages}); installed: {', '.join(default_languages(installed))}"
        )
    return Engine(tessdata=tessdata, languages=wanted, osd="osd" in installed)


def parse_languages(value: str) -> tuple[str, ...]:
    """'deu+eng', 'deu, eng' or 'deu eng' → ('deu', 'eng'), in order, without repeats."""
    parts = tuple(dict.fromkeys(p for p in _SEPARATORS.split(value.strip()) if p))
    if not parts or not all(_LANGUAGE.fullmatch(p) for p in parts):
        raise UnsupportedFileError(
            f"ocr_languages {value[:60]!r} is not a list of Tesseract language codes "
            "such as 'eng' or 'deu+eng'"
        )
    return parts


def default_languages(installed: frozenset[str]) -> tuple[str, ...]:
    """Every installed language, English first (Tesseract's first language leads)."""
    langs = sorted(installed - _NOT_LANGUAGES)
    if "eng" in langs:
        langs.remove("eng")
        langs.insert(0, "eng")
    return tuple(langs)


def installed_languages(tessdata: Path) -> frozenset[str]:
    return frozenset(p.stem for p in tessdata.glob("*.traineddata") if p.is_file())


_found_tessdata: dict[Path | None, Path] = {}


def find_tessdata(configured: Path | None) -> Path:
    """The language data directory; only successes are remembered (install, then retry)."""
    if configured in _found_tessdata:
        return _found_tessdata[configured]
    if configured is not None:
        if not installed_languages(configured):
            raise UnsupportedFileError(
                f"OCR is not available on this worker: no Tesseract language data in "
                f"{configured} (PREPSHELF_OCR_TESSDATA_DIR); {INSTALL_HINT.split(' or ')[0]}"
            )
        found = configured
    else:
        found = _discover_tessdata()
    _found_tessdata[configured] = found
    return found


def _discover_tessdata() -> Path:
    candidates: list[Path] = []
    prefix = os.environ.get("TESSDATA_PREFIX")
    if prefix:
        candidates += [Path(prefix), Path(prefix) / "tessdata"]
    candidates += _TESSDATA_CANDIDATES
    for candidate in candidates:
        if installed_languages(candidate):
            return candidate
    reported = _binary_tessdata()
    if reported is not None and installed_languages(reported):
        return reported
    raise UnsupportedFileError(
        "OCR is not available on this worker: Tesseract language data not found; " + INSTALL_HINT
    )


def _binary_tessdata() -> Path | None:
    """Where a `tesseract` binary on PATH keeps its languages (a non-standard install)."""
    binary = shutil.which("tesseract")
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _LIST_LANGS.search(out.stdout + out.stderr)
    return Path(match.group(1)) if match else None


def tesserocr_module() -> Any:
    try:
        import tesserocr
    except ImportError as exc:
        raise UnsupportedFileError(
            "OCR is not available on this worker: the Python package tesserocr is missing "
            f"(pip install {TESSEROCR_PIN})"
        ) from exc
    global _quiet
    if not _quiet:  # Leptonica reports odd page regions on stderr; the page result says enough
        tesserocr.set_leptonica_log_level(tesserocr.LeptLogLevel.NONE)
        _quiet = True
    return tesserocr


_quiet = False


# --- recognition ----------------------------------------------------------------------------


def recognize(image: Image.Image, engine: Engine, *, dpi: int | None, timeout_s: float) -> PageOcr:
    """OCR one 8-bit grey page: detect its orientation, turn it upright, read it.

    Raises OcrTimeout past `timeout_s` (orientation and a second reading included).
    """
    if image.mode != "L":
        raise ValueError(f"recognize() takes 8-bit grey images, not {image.mode}")
    deadline = time.monotonic() + timeout_s
    proposal, sure = _orientation(image, engine)
    first = proposal if sure else 0
    result = _read(image, first, engine, dpi, deadline)
    second = 0 if first else proposal
    if second != first and (result.confidence or 0.0) < RETRY_BELOW_CONFIDENCE:
        other = _read(image, second, engine, dpi, deadline)
        if (other.confidence or 0.0) > (result.confidence or 0.0):
            result = other
    return result


def _orientation(image: Image.Image, engine: Engine) -> tuple[int, bool]:
    """(clockwise turn Tesseract sees, whether it is sure enough to act on it)."""
    if not engine.osd:
        return 0, False
    api = _recogniser(engine.tessdata, "osd", _PSM_OSD_ONLY)
    pixels = image.tobytes()  # Tesseract does not copy the buffer: keep it alive meanwhile
    try:
        api.SetImageBytes(pixels, image.width, image.height, 1, image.width)
        found = api.DetectOrientationScript()
    except RuntimeError:  # too few characters to tell
        found = None
    finally:
        api.Clear()
    if not found:
        return 0, False
    angle = int(found["orient_deg"]) % 360
    if angle not in _TURN:
        return 0, False
    return angle, float(found["orient_conf"]) >= OSD_MIN_CONFIDENCE


def _read(
    image: Image.Image, angle: int, engine: Engine, dpi: int | None, deadline: float
) -> PageOcr:
    upright = image.transpose(_TURN[angle]) if angle else image
    left_ms = int((deadline - time.monotonic()) * 1000)
    if left_ms <= 0:
        raise OcrTimeout()
    api = _recogniser(engine.tessdata, engine.lang, _PSM_AUTO)
    pixels = upright.tobytes()  # kept alive until Clear(): Tesseract reads it in place
    try:
        api.SetImageBytes(pixels, upright.width, upright.height, 1, upright.width)
        if dpi:
            api.SetSourceResolution(dpi)
        if not api.Recognize(timeout=left_ms):
            if time.monotonic() >= deadline - 0.05:
                raise OcrTimeout()
            return PageOcr(text="", confidence=None, words=0, rotation=angle)
        text = api.GetUTF8Text()
        # Asking an empty page for its words makes tesserocr print an error: ask only with text.
        words = [(w, c) for w, c in api.MapWordConfidences() if w.strip()] if text.strip() else []
    finally:
        api.Clear()
    if not words:
        text = ""  # whitespace or stray marks only
    letters = sum(len(w) for w, _ in words)
    confidence = sum(len(w) * c for w, c in words) / letters if letters else None
    return PageOcr(text=text, confidence=confidence, words=len(words), rotation=angle)


_recognisers: OrderedDict[tuple[str, str, int], Any] = OrderedDict()


def _recogniser(tessdata: Path, lang: str, psm: int) -> Any:
    """A loaded Tesseract API for (data, languages, mode), least recently used evicted."""
    key = (str(tessdata), lang, psm)
    api = _recognisers.pop(key, None)
    if api is None:
        tesserocr = tesserocr_module()
        try:
            api = tesserocr.PyTessBaseAPI(path=f"{tessdata}{os.sep}", lang=lang, psm=psm)
        except RuntimeError as exc:
            raise UnsupportedFileError(
                f"OCR could not load Tesseract languages {lang!r} from {tessdata}: {exc}"
            ) from exc
        api.SetVariable("debug_file", "/dev/null")  # no per-page warnings in the worker's log
        while len(_recognisers) >= _MAX_RECOGNISERS:
            _recognisers.popitem(last=False)[1].End()
    _recognisers[key] = api
    return api
