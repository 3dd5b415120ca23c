"""OCR throughput: pages/s through prepshelf against the `tesseract` binary run by hand on the
same rendered pages, in one run; then the measurements behind OCR's two thresholds.

Pages: the corpus scans rendered at 300 DPI in grey (bad/loremipsum-flat.pdf, the scanned
journal page a1977-backus-p21.pdf and the typewritten pdf-with-ocr-text.pdf; prepshelf keeps
the text layers of the last two, here their pixels are read) and generated pages of known text
(a clean page, a dense page, the clean page upside down), cycled to `--pages`.

1. **tesseract by hand** — `tesseract page.png stdout -l LANGS` per page, one after another:
   as Debian installs it (OpenMP on) and with `OMP_THREAD_LIMIT=1` (one core, as each prepshelf
   parse child). Debian's binary is Tesseract 5.3.0; the tesserocr wheel bundles 5.5.4.
2. **prepshelf sandbox** — `parse_in_subprocess` on a multi-page TIFF of the same pages (decode,
   orientation detection, recognition, in a warm sandbox child).
3. **prepshelf service** — the TIFF uploaded with the openai SDK to a real service (embedded
   PostgreSQL, API, one worker): the job's `ocr` stage seconds (its `stage_durations`), and
   upload → `completed`.

Also printed: how many words of the known text each reads on the generated pages; the mean word
confidence by kind of input (`PREPSHELF_OCR_MIN_CONFIDENCE`); Tesseract's orientation
confidence on turned, upright and noise pages (`OSD_MIN_CONFIDENCE` in pipeline/ocr.py).

Run: `python bench/ocr.py [--pages 12] [--languages eng] [--skip-service] [--json OUT]`.
Unset `--languages` = what the service uses by default: every installed language.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from prepshelf.pipeline.ocr import (  # noqa: E402
    Engine,
    OcrOptions,
    find_tessdata,
    load_engine,
    recognize,
    tesserocr_module,
)
from prepshelf.pipeline.sandbox import parse_in_subprocess, shutdown_sandbox  # noqa: E402
from support.corpus import CORPUS  # noqa: E402
from support.postgres import TestPostgres  # noqa: E402
from support.scans import (  # noqa: E402
    INVOICE,
    LIGHTHOUSE,
    QUARTERMASTER,
    ZEPHYR,
    text_page,
    tiff_pages,
)
from support.service import Service  # noqa: E402

SCANS = ("bad/loremipsum-flat.pdf", "a1977-backus-p21.pdf", "pdf-with-ocr-text.pdf")
KNOWN = [QUARTERMASTER, ZEPHYR, INVOICE, LIGHTHOUSE]


def render(pdf_path: Path, dpi: int = 300) -> Image.Image:
    pdf = pdfium.PdfDocument(pdf_path)
    try:
        bitmap = pdf[0].render(scale=dpi / 72, grayscale=True)
        return bitmap.to_pil().convert("L")
    finally:
        pdf.close()


def build_pages(count: int) -> list[tuple[str, Image.Image, set[str] | None]]:
    """(label, page, known words or None), cycled to `count` pages."""
    clean = text_page(*KNOWN, size=(2480, 900))
    dense = text_page(*(KNOWN * 9), size=(2480, 3300), font_size=34)
    base: list[tuple[str, Image.Image, set[str] | None]] = [
        (Path(name).name, render(CORPUS / name), None) for name in SCANS
    ]
    base += [
        ("generated clean", clean, _words(" ".join(KNOWN))),
        ("generated dense", dense, _words(" ".join(KNOWN))),
        ("generated upside down", clean.rotate(180), _words(" ".join(KNOWN))),
    ]
    return [base[i % len(base)] for i in range(count)]


def _words(text: str) -> set[str]:
    return {w.strip(".,;:").lower() for w in text.split() if w.strip(".,;:")}


def recall(known: set[str], text: str) -> float:
    return len(known & _words(text)) / len(known)


def by_hand(pngs: list[Path], langs: str, one_thread: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if one_thread:
        env["OMP_THREAD_LIMIT"] = "1"
    texts: list[str] = []
    started = time.perf_counter()
    for png in pngs:
        out = subprocess.run(
            ["tesseract", str(png), "stdout", "-l", langs],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        texts.append(out.stdout)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pages_per_s": len(pngs) / seconds, "texts": texts}


def in_sandbox(tif: Path, pages: int, langs: str) -> dict[str, Any]:
    options = OcrOptions(languages=langs)
    warm = tif.with_name("warm.png")
    text_page(ZEPHYR).save(warm)
    parse_in_subprocess(warm, "warm.png", timeout_s=600, memory_limit_bytes=3 << 30, ocr=options)
    started = time.perf_counter()
    doc = parse_in_subprocess(
        tif, "pages.tif", timeout_s=3600, memory_limit_bytes=3 << 30, ocr=options
    )
    seconds = time.perf_counter() - started
    shutdown_sandbox()
    texts = {s.page: doc.text[s.start : s.end] for s in doc.page_spans}
    assert doc.ocr is not None
    return {
        "seconds": seconds,
        "pages_per_s": pages / seconds,
        "texts": [texts.get(i + 1, "") for i in range(pages)],
        "rotated": len(doc.ocr.rotated),
        "low_confidence": len(doc.ocr.low_confidence),
    }


def through_service(tif: Path, pages: int, langs: str, root: Path) -> dict[str, Any]:
    pg = TestPostgres(root / "pg").start()
    env = {"PREPSHELF_OCR_LANGUAGES": langs, "PREPSHELF_TORCH_THREADS": "1"}
    svc = Service(pg.new_database(), root / "svc", workers=1, extra_env=env)
    try:
        svc.start()
        client = svc.openai()
        store = client.vector_stores.create(name="ocr bench")
        warm = io.BytesIO()
        text_page(ZEPHYR).save(warm, format="PNG")  # model loads and a warm child, not timed
        _ingest(client, store.id, "warm.png", warm.getvalue())
        started = time.perf_counter()
        vsf = _ingest(client, store.id, "pages.tif", tif.read_bytes())
        wall = time.perf_counter() - started
        with svc.http() as http:
            job = http.get(f"/v1/jobs/{vsf.model_extra['job_id']}").json()
    finally:
        svc.stop()
        pg.stop()
    ocr_s = float(job["stage_durations"]["ocr"])
    return {
        "status": vsf.status,
        "ocr_seconds": ocr_s,
        "pages_per_s": pages / ocr_s,
        "upload_to_completed_s": wall,
        "stage_durations": job["stage_durations"],
    }


def _ingest(client: Any, store_id: str, name: str, data: bytes) -> Any:
    file_id = client.files.create(file=(name, data), purpose="assistants").id
    client.vector_stores.files.create(vector_store_id=store_id, file_id=file_id)
    while True:
        vsf = client.vector_stores.files.retrieve(vector_store_id=store_id, file_id=file_id)
        if vsf.status != "in_progress":
            return vsf
        time.sleep(0.1)


def confidence_table(langs: str) -> list[tuple[str, float | None, int, str]]:
    """Mean word confidence by kind of input, read upright (no orientation detection)."""
    engine = load_engine(OcrOptions(languages=langs))
    plain = Engine(engine.tessdata, engine.languages, osd=False)
    clean = text_page(ZEPHYR, INVOICE, LIGHTHOUSE, size=(2000, 900))
    rng = np.random.default_rng(1)
    noisy = np.clip(np.asarray(clean, dtype=np.int16) + rng.normal(0, 90, (900, 2000)), 0, 255)
    inputs = [(Path(name).name, render(CORPUS / name)) for name in SCANS]
    inputs += [
        ("generated clean", clean),
        ("generated, 1/5 size (x-height ~6 px)", clean.resize((400, 180))),
        ("generated, blur radius 4", clean.filter(ImageFilter.GaussianBlur(4))),
        ("generated, blur radius 5", clean.filter(ImageFilter.GaussianBlur(5))),
        ("generated, blur radius 6", clean.filter(ImageFilter.GaussianBlur(6))),
        ("generated, turned 90°, read as is", clean.rotate(90, expand=True)),
        ("generated, upside down, read as is", clean.rotate(180)),
        ("generated + gaussian noise σ=90", Image.fromarray(noisy.astype(np.uint8))),
        ("uniform noise", Image.fromarray(rng.integers(0, 256, (900, 2000), dtype=np.uint8))),
        (
            "salt noise 5%",
            Image.fromarray(np.where(rng.random((900, 2000)) < 0.05, 0, 255).astype(np.uint8)),
        ),
    ]
    rows = []
    for label, image in inputs:
        result = recognize(image, plain, dpi=None, timeout_s=120)
        rows.append((label, result.confidence, result.words, " ".join(result.text.split())[:50]))
    return rows


def osd_table() -> list[tuple[str, int | None, float | None]]:
    """Tesseract's orientation (clockwise degrees it sees) and confidence."""
    tesserocr = tesserocr_module()
    api = tesserocr.PyTessBaseAPI(path=f"{find_tessdata(None)}/", lang="osd", psm=0)
    clean = text_page(*KNOWN, size=(2480, 900))
    backus = render(CORPUS / "a1977-backus-p21.pdf")
    rng = np.random.default_rng(2)
    inputs = [(f"{Path(n).name}, upright", render(CORPUS / n)) for n in SCANS]
    inputs += [(f"generated, turned {d}°", clean.rotate(d, expand=True)) for d in (0, 90, 180, 270)]
    inputs += [(f"backus, turned {d}°", backus.rotate(d, expand=True)) for d in (90, 180)]
    inputs += [("uniform noise", Image.fromarray(rng.integers(0, 256, (900, 2000), np.uint8)))]
    rows: list[tuple[str, int | None, float | None]] = []
    for label, image in inputs:
        pixels = image.tobytes()
        api.SetImageBytes(pixels, image.width, image.height, 1, image.width)
        try:
            found = api.DetectOrientationScript()
        except RuntimeError:
            found = None
        rows.append(
            (label, found and found["orient_deg"], found and round(found["orient_conf"], 1))
        )
    api.End()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=12, help="pages to OCR [12]")
    parser.add_argument("--languages", help="e.g. eng; unset = every installed language")
    parser.add_argument("--skip-service", action="store_true", help="no real-service run")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    langs = args.languages or load_engine(OcrOptions()).lang
    pages = build_pages(args.pages)
    figures: dict[str, Any] = {"pages": args.pages, "languages": langs}
    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as tmp:
        root = Path(tmp)
        pngs = []
        for i, (_, image, _) in enumerate(pages):
            pngs.append(root / f"page-{i:03d}.png")
            image.save(pngs[-1])
        tif = root / "pages.tif"
        tif.write_bytes(tiff_pages(*(image for _, image, _ in pages)))
        runs = {
            "tesseract by hand (OpenMP, as installed)": by_hand(pngs, langs, one_thread=False),
            "tesseract by hand (OMP_THREAD_LIMIT=1)": by_hand(pngs, langs, one_thread=True),
            "prepshelf sandbox (parse_in_subprocess)": in_sandbox(tif, len(pages), langs),
        }
        service = None if args.skip_service else through_service(tif, len(pages), langs, root)
    print(f"\nOCR of {len(pages)} pages ({langs}), {os.cpu_count()} CPUs\n")
    print(f"{'':44s} {'seconds':>8s} {'pages/s':>8s} {'known words read':>17s}")
    for label, run in runs.items():
        found = [recall(k, t) for (_, _, k), t in zip(pages, run["texts"], strict=True) if k]
        print(
            f"{label:44s} {run['seconds']:8.1f} {run['pages_per_s']:8.2f} "
            f"{statistics.mean(found):16.0%}"
        )
        figures[label] = {k: v for k, v in run.items() if k != "texts"} | {"recall": found}
    if service:
        print(
            f"{'prepshelf service (job ocr stage)':44s} {service['ocr_seconds']:8.1f} "
            f"{service['pages_per_s']:8.2f}   (upload → completed "
            f"{service['upload_to_completed_s']:.1f} s, {service['status']})"
        )
        figures["prepshelf service"] = service
    hand = runs["tesseract by hand (OMP_THREAD_LIMIT=1)"]["pages_per_s"]
    ours = runs["prepshelf sandbox (parse_in_subprocess)"]["pages_per_s"]
    print(f"\nprepshelf sandbox / tesseract by hand, one thread each: {ours / hand:.2f}x pages/s")

    print(f"\nMean word confidence, read upright without orientation detection ({langs}):")
    conf_rows = confidence_table(langs)
    for label, confidence, words, text in conf_rows:
        shown = "  –  " if confidence is None else f"{confidence:5.1f}"
        print(f"  {label:42s} {shown} {words:5d} words  {text!r}")
    figures["confidence"] = conf_rows
    print("\nOrientation detection (OSD): degrees Tesseract sees, confidence:")
    osd_rows = osd_table()
    for label, degrees, confidence in osd_rows:
        print(f"  {label:42s} {degrees!s:>5s} {confidence!s:>6s}")
    figures["osd"] = osd_rows
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
