"""Scans and images through the real service and the openai SDK: searchable by the words they
show, chunks saying their page and whether OCR read them, progress in pages on the job and its
events, hostile images failing precisely while the worker lives on, cancel stopping OCR, and a
worker without Tesseract's data still serving everything else."""

from __future__ import annotations

import io
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import ImageFilter

from prepshelf.store.migrate import _migration_files
from support.corpus import CORPUS, needs_corpus
from support.postgres import TestPostgres as Postgres  # not collected as a test class
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
from support.service import REAL_MODEL, Service

GERMAN = "Größere Übergänge prüfen wir später gründlich."
CORPUS_SCANS = [
    "pdf-with-ocr-text.pdf",
    "a1977-backus-p21.pdf",
    "bad/loremipsum-flat.pdf",
    "bad/imagemagick-CCITTFaxDecode.pdf",
]


@pytest.fixture(scope="module")
def service(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Service(
        database_url,
        tmp_path_factory.mktemp("ocr"),
        workers=1,
        # Real model: the test finds scans by the meaning of their OCR'd text.
        extra_env={
            "PREPSHELF_TORCH_THREADS": "1",
            "PREPSHELF_PARSE_MEMORY_LIMIT_MB": "1024",
            **REAL_MODEL,
        },
    ) as svc:
        yield svc


def _upload(client: Any, name: str, data: bytes) -> str:
    return str(client.files.create(file=(name, io.BytesIO(data)), purpose="assistants").id)


SMALL_CHUNKS = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
}
Files = dict[str, tuple[bytes, dict[str, Any]]]


def _attach_all(client: Any, store_id: str, files: Files, chunking: Any = None) -> dict[str, Any]:
    """Upload, attach with per-file attributes, and wait for every file to finish."""
    ids = {}
    for name, (data, attributes) in files.items():
        file_id = _upload(client, name, data)
        extra = {"chunking_strategy": chunking} if chunking else {}
        client.vector_stores.files.create(
            vector_store_id=store_id, file_id=file_id, attributes=attributes or None, **extra
        )
        ids[name] = file_id
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = {
            f.id: f for f in client.vector_stores.files.list(vector_store_id=store_id, limit=100)
        }
        if all(listed[i].status != "in_progress" for i in ids.values()):
            return {name: listed[file_id] for name, file_id in ids.items()}
        time.sleep(0.5)
    raise AssertionError("files still in progress after 10 minutes")


@pytest.fixture(scope="module")
def scans(service: Service) -> dict[str, Any]:
    client = service.openai()
    # The store narrows OCR to English; one file asks for German through its attributes.
    store = client.vector_stores.create(name="scans", metadata={"ocr_languages": "eng"})
    files: dict[str, tuple[bytes, dict[str, Any]]] = {
        "herring.png": (encode(text_page(QUARTERMASTER), "PNG"), {}),
        "upside-down.jpg": (
            encode(text_page(LIGHTHOUSE, ZEPHYR).rotate(180).convert("RGB"), "JPEG"),
            {},
        ),
        "sideways.webp": (
            encode(text_page(ZEPHYR).rotate(90, expand=True), "WEBP", quality=90),
            {},
        ),
        "german.png": (encode(text_page(GERMAN), "PNG"), {"ocr_languages": "deu"}),
    }
    if (CORPUS / "MANIFEST.tsv").is_file():
        for name in CORPUS_SCANS:
            files[Path(name).name] = ((CORPUS / name).read_bytes(), {})
    done = _attach_all(client, store.id, files)
    # Three pages, the middle one long enough (~200 tokens) to fill 100-token chunks alone.
    long_page = text_page(*([INVOICE, LIGHTHOUSE, QUARTERMASTER] * 5), size=(2000, 1400))
    fax = tiff_pages(text_page(ZEPHYR), long_page, text_page(ZEPHYR))
    done |= _attach_all(client, store.id, {"fax.tif": (fax, {"topic": "fax"})}, SMALL_CHUNKS)
    return {"store": store.id, "files": done}


def _search(service: Service, store_id: str, query: str, **kwargs: Any) -> list[Any]:
    results = service.openai().vector_stores.search(
        vector_store_id=store_id, query=query, max_num_results=10, **kwargs
    )
    return list(results)


def _job(service: Service, vsf: Any) -> dict[str, Any]:
    job_id = (vsf.model_extra or {})["job_id"]
    with service.http() as http:
        return dict(http.get(f"/v1/jobs/{job_id}").json())


def test_images_complete_and_their_words_are_found(service: Service, scans: dict[str, Any]) -> None:
    files = scans["files"]
    generated = ["herring.png", "upside-down.jpg", "sideways.webp", "fax.tif", "german.png"]
    assert files["fax.tif"].chunking_strategy.static.max_chunk_size_tokens == 100
    assert {n: files[n].status for n in generated} == dict.fromkeys(generated, "completed")
    for query, expected in [
        ("quartermaster counted barrels of salted herring", "herring.png"),
        ("lighthouse keepers logged passing schooner winter storms", "upside-down.jpg"),
        ("Übergänge prüfen wir später gründlich", "german.png"),
    ]:
        hits = _search(service, scans["store"], query)
        assert hits and hits[0].filename == expected, (query, [h.filename for h in hits])
        assert hits[0].attributes["ocr"] is True
        assert hits[0].attributes["ocr_confidence"] > 60
    words = _search(service, scans["store"], "Zephyr jumped over seven lazy dwarves")
    assert {"sideways.webp", "upside-down.jpg", "fax.tif"} <= {h.filename for h in words[:6]}


def test_chunks_say_their_page_and_filters_see_it(service: Service, scans: dict[str, Any]) -> None:
    store, query = scans["store"], "invoices paid within thirty days of delivery"
    fax = next(h for h in _search(service, store, query) if h.filename == "fax.tif")
    assert set(fax.attributes) == {"topic", "page", "page_end", "ocr", "ocr_confidence"}
    assert fax.attributes["topic"] == "fax" and fax.attributes["ocr"] is True  # file's + chunk's
    assert 1 <= fax.attributes["page"] <= fax.attributes["page_end"] <= 3

    def only(page: int) -> list[Any]:
        flt = {
            "type": "and",
            "filters": [
                {"type": "eq", "key": "topic", "value": "fax"},
                {"type": "eq", "key": "page", "value": page},
            ],
        }
        return _search(service, store, query, filters=flt)

    middle = only(2)
    assert middle and all(h.attributes["page"] == 2 for h in middle)
    assert any(h.attributes["page_end"] == 2 for h in middle)  # a chunk wholly on page 2
    first = only(1)
    assert len(first) == 1 and "Zephyr" in first[0].content[0].text
    ocr_only = _search(service, store, query, filters={"type": "eq", "key": "ocr", "value": False})
    assert {h.filename for h in ocr_only} <= {"pdf-with-ocr-text.pdf", "a1977-backus-p21.pdf"}


@needs_corpus
def test_corpus_scans(service: Service, scans: dict[str, Any]) -> None:
    files = scans["files"]
    assert files["loremipsum-flat.pdf"].status == "completed"
    assert files["pdf-with-ocr-text.pdf"].status == "completed"
    assert files["a1977-backus-p21.pdf"].status == "completed"
    fax = files["imagemagick-CCITTFaxDecode.pdf"]  # a 16 × 16 smiley, no text to find
    assert fax.status == "failed" and fax.last_error.code == "invalid_file"
    assert fax.last_error.message.startswith(
        "imagemagick-CCITTFaxDecode.pdf: ocr: no text found by OCR (1 page(s) OCR'd with eng)"
    )
    store = scans["store"]
    for query, expected, by_ocr in [
        ("lorem ipsum dolor sit amet consectetur adipiscing", "loremipsum-flat.pdf", True),
        ("can programming be liberated from the von Neumann style", "a1977-backus-p21.pdf", False),
        ("progress of the Foundation sugar company contracts", "pdf-with-ocr-text.pdf", False),
    ]:
        hits = _search(service, store, query)
        top = next((h for h in hits[:3] if h.filename == expected), None)
        assert top is not None, (query, [h.filename for h in hits])
        assert top.attributes["page"] == 1 and top.attributes["ocr"] is by_ocr
    job = _job(service, files["loremipsum-flat.pdf"])
    ocr = job["result"]["ocr"]
    assert (ocr["pages"], ocr["languages"], ocr["requested_languages"]) == (1, "eng", "eng")
    assert ocr["mean_confidence"] > 80 and ocr["low_confidence_pages"] == []
    assert "ocr" in job["stage_durations"]
    assert _job(service, files["a1977-backus-p21.pdf"])["result"] is None  # its text layer


def test_the_same_scan_again_is_copied_unless_other_languages_are_asked(
    service: Service, scans: dict[str, Any]
) -> None:
    client = service.openai()
    data = encode(text_page(QUARTERMASTER), "PNG")  # the bytes of herring.png
    again = client.vector_stores.create(name="again", metadata={"ocr_languages": "eng"})
    copy = _attach_all(client, again.id, {"herring-again.png": (data, {})})["herring-again.png"]
    job = _job(service, copy)
    assert copy.status == "completed" and "parsing" not in job["stage_durations"]  # a twin copy
    assert job["result"]["ocr"]["pages"] == 1  # the twin's OCR report came along
    hit = _search(service, again.id, "quartermaster salted herring")[0]
    confidence = hit.attributes.pop("ocr_confidence")  # the SDK types numbers as float
    assert hit.attributes == {"page": 1, "page_end": 1, "ocr": True} and 60 < confidence <= 100

    german = client.vector_stores.create(name="other", metadata={"ocr_languages": "deu"})
    other = _attach_all(client, german.id, {"herring-deu.png": (data, {})})["herring-deu.png"]
    job = _job(service, other)
    assert other.status == "completed" and "ocr" in job["stage_durations"]  # OCR'd again
    assert job["result"]["ocr"]["requested_languages"] == "deu"


def test_progress_in_pages_reaches_the_job_and_its_events(service: Service) -> None:
    client = service.openai()
    store = client.vector_stores.create(name="progress", metadata={"ocr_languages": "eng"})
    pages = [text_page(s) for s in (QUARTERMASTER, ZEPHYR, INVOICE, LIGHTHOUSE)] * 2
    done = _attach_all(client, store.id, {"eight.tif": (tiff_pages(*pages), {})})["eight.tif"]
    assert done.status == "completed", done.last_error
    job = _job(service, done)
    with service.db() as db:
        rows = db.execute(
            "SELECT data FROM job_events WHERE job_id = %s ORDER BY txid, id", [job["id"]]
        ).fetchall()
    ocr = [r["data"] for r in rows if r["data"]["stage"] == "ocr"]
    assert ocr and all(e["progress"]["unit"] == "pages" for e in ocr)
    assert {e["progress"]["total"] for e in ocr} == {8}
    counts = [e["progress"]["done"] for e in ocr]
    assert counts == sorted(counts) and counts[-1] == 8
    # Stages that came and went within stage_write_delay_ms show no event of their own
    # (jobs/stage_clock.py); those written are in pipeline order, and all are timed.
    order = ["parsing", "ocr", "chunking", "embedding", "indexing"]
    shown = [s for s in dict.fromkeys(r["data"]["stage"] for r in rows) if s is not None]
    assert "ocr" in shown and shown == sorted(shown, key=order.index), shown
    assert job["stage_durations"].keys() >= set(order)
    with (
        service.http() as http,
        http.stream("GET", f"/v1/jobs/{job['id']}/events") as response,
    ):
        streamed = [line for line in response.iter_lines() if line.startswith("data:")]
    assert any('"stage":"ocr"' in line and '"unit":"pages"' in line for line in streamed)


def test_cancel_stops_ocr_midway(service: Service) -> None:
    client = service.openai()
    store = client.vector_stores.create(name="cancel", metadata={"ocr_languages": "eng"})
    dense = text_page(*([QUARTERMASTER, ZEPHYR, INVOICE, LIGHTHOUSE] * 8), size=(2400, 3000))
    file_id = _upload(client, "book.tif", tiff_pages(*([dense] * 40)))
    vsf = client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
    job_id = (vsf.model_extra or {})["job_id"]
    with service.http() as http:
        deadline = time.monotonic() + 300
        while http.get(f"/v1/jobs/{job_id}").json()["stage"] != "ocr":
            assert time.monotonic() < deadline, "the job never reached its OCR stage"
            time.sleep(0.2)
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] not in (
            "cancelled",
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, "cancel did not end the job"
            time.sleep(0.2)
    assert job["status"] == "cancelled"
    assert job["progress"]["unit"] == "pages" and job["progress"]["done"] < 40
    # The worker took the next file at once (its sandbox child was replaced).
    after = _attach_all(client, store.id, {"after.png": (encode(text_page(INVOICE), "PNG"), {})})
    assert after["after.png"].status == "completed"


# name -> (data, expected code, words the message must contain)
def _hostile() -> dict[str, tuple[bytes, str, str]]:
    png = encode(text_page(QUARTERMASTER), "PNG")
    jpeg = encode(text_page(QUARTERMASTER).convert("RGB"), "JPEG")
    smudged = text_page(ZEPHYR, INVOICE, LIGHTHOUSE, size=(2000, 900))
    return {
        "bomb.png": (png_white(10_000, 10_000), "invalid_file", "100.0 megapixels"),
        "tiny-huge.png": (png_header_only(100_000, 100_000), "invalid_file", "megapixels"),
        "strip.png": (png_header_only(40_000, 100), "invalid_file", "sides of 1 to 32,767"),
        "cut.png": (png[: len(png) // 2], "invalid_file", "corrupt png"),
        "cut.jpg": (jpeg[:600], "invalid_file", "corrupt jpeg"),
        "book.tif": (many_page_tiff(2000), "invalid_file", "prepshelf_ocr_max_pages"),
        "smudge.png": (
            encode(smudged.filter(ImageFilter.GaussianBlur(6)), "PNG"),
            "invalid_file",
            "prepshelf_ocr_min_confidence",
        ),
        # An image named .pdf is read as the image it is: a blank 16 × 16 one holds no text.
        "tiny-image.pdf": (encode(text_page(size=(16, 16)), "PNG"), "invalid_file", "no text"),
    }


def test_hostile_images_fail_precisely_and_the_worker_lives(service: Service) -> None:
    client = service.openai()
    store = client.vector_stores.create(name="hostile images", metadata={"ocr_languages": "eng"})
    hostile = _hostile()
    pid = service.workers[0].pid
    done = _attach_all(client, store.id, {n: (d, {}) for n, (d, _, _) in hostile.items()})
    problems = {}
    for name, (_, code, words) in hostile.items():
        vsf = done[name]
        error = vsf.last_error
        if not (
            vsf.status == "failed"
            and error is not None
            and error.code == code
            and error.message.startswith(f"{name}: ")
            and words in error.message.lower()
        ):
            problems[name] = (vsf.status, error)
    assert problems == {}
    assert service.workers[0].poll() is None and service.workers[0].pid == pid
    later = _attach_all(client, store.id, {"later.png": (encode(text_page(INVOICE), "PNG"), {})})
    assert later["later.png"].status == "completed"


def test_a_worker_stopped_mid_ocr_exits_at_the_next_page_and_hands_the_job_back(
    service: Service,
) -> None:
    client = service.openai()
    store = client.vector_stores.create(name="shutdown", metadata={"ocr_languages": "eng"})
    dense = text_page(*([QUARTERMASTER, ZEPHYR, INVOICE, LIGHTHOUSE] * 8), size=(2400, 3000))
    bilevel = dense.convert("1")  # CCITT G4 as a fax: 300 pages in a few MB, ~10 min of OCR
    file_id = _upload(client, "long.tif", tiff_pages(*([bilevel] * 300), compression="group4"))
    vsf = client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
    job_id = (vsf.model_extra or {})["job_id"]
    with service.http() as http:
        deadline = time.monotonic() + 300
        while http.get(f"/v1/jobs/{job_id}").json()["stage"] != "ocr":
            assert time.monotonic() < deadline, "the job never reached its OCR stage"
            time.sleep(0.2)
        worker = service.workers[-1]
        worker.send_signal(signal.SIGTERM)
        # The parse thread cannot be cancelled: without the stop at the next page the process
        # would wait for all 300 pages before exiting.
        assert worker.wait(timeout=90) == 0
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "queued" and job["progress"]["done"] < 300
        assert job["attempt_log"][-1]["outcome"] == "released: worker shutting down"
        service.start_worker()
        service.wait_ready()
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200


def test_migration_adds_the_ocr_stage_and_keeps_every_other(postgres: Postgres) -> None:
    sql = next(sql for _, name, sql in _migration_files() if name == "0030_ocr.sql")
    with psycopg.connect(postgres.new_database(), autocommit=True) as db:  # fully migrated
        stages = _allowed_stages(db)
        assert {"parsing", "ocr", "chunking", "embedding", "indexing", "expanding"} <= stages
        # A database that gained a stage from a later-numbered migration first (upgraded out
        # of order) keeps it when this migration runs after it.
        db.execute("ALTER TABLE jobs DROP CONSTRAINT jobs_stage_check")
        db.execute(
            "ALTER TABLE jobs ADD CONSTRAINT jobs_stage_check "
            "CHECK (stage IN ('parsing', 'chunking', 'listing'))"
        )
        db.execute(sql)
        assert _allowed_stages(db) == {"parsing", "chunking", "listing", "ocr"}


def _allowed_stages(db: psycopg.Connection[Any]) -> set[str]:
    row = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'jobs'::regclass AND conname = 'jobs_stage_check'"
    ).fetchone()
    assert row is not None
    return set(re.findall(r"'([a-z_]+)'", row[0]))


# --- a worker without Tesseract's language data ---------------------------------------------


@pytest.fixture(scope="module")
def blind_service(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("blind")
    svc = Service(
        postgres.new_database(),  # its own: the other service's worker must not take its jobs
        folder,
        extra_env={"PREPSHELF_OCR_TESSDATA_DIR": str(folder / "no-tessdata")},
    )
    try:
        yield svc.start()  # starts and becomes ready: OCR is needed only by scans
    finally:
        svc.stop()


def test_without_tesseract_the_service_runs_and_scans_say_what_to_install(
    blind_service: Service,
) -> None:
    client = blind_service.openai()
    store = client.vector_stores.create(name="blind")
    done = _attach_all(
        client,
        store.id,
        {
            "notes.txt": (b"Plain text needs no OCR at all, so it is indexed as usual.", {}),
            "scan.png": (encode(text_page(QUARTERMASTER), "PNG"), {}),
        },
    )
    assert done["notes.txt"].status == "completed"
    scan = done["scan.png"]
    assert scan.status == "failed" and scan.last_error.code == "unsupported_file"
    assert scan.last_error.message.startswith(
        "scan.png: parsing: OCR is not available on this worker: no Tesseract language data in "
    )
    assert "install the Debian packages tesseract-ocr and tesseract-ocr-eng" in (
        scan.last_error.message
    )
