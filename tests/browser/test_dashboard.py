"""The /ui dashboard in headless Chromium: live progress, a failure's cause, retry, screenshot."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.corpus import CORPUS, good_files, needs_corpus
from support.service import Service

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
GOOD = ("project-governance.md", "ideas-page.html", "eng_spa_mult.docx")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium "
        "(apt-get install chromium chromium-driver; .ci/run does it)",
    ),
    needs_corpus,
]


@pytest.fixture(scope="module")
def page(service: Service) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


def test_dashboard_watches_a_batch_and_retries_a_failure(service: Service, page: Any) -> None:
    from playwright.sync_api import expect

    client = service.openai()
    store = client.vector_stores.create(name="dashboard demo")
    paths = [p for p in good_files() if p.name in GOOD] + [CORPUS / "bad" / "empty.pdf"]
    assert len(paths) == len(GOOD) + 1
    ids = {
        p.name: client.files.create(file=(p.name, p.read_bytes()), purpose="assistants").id
        for p in paths
    }

    # The page asks for the key once; every data call then carries it in a header.
    page.goto(f"http://127.0.0.1:{service.port}/ui")
    page.fill("#api-key", service.api_key)
    page.click("#key-save")
    page.get_by_role("link", name="dashboard demo").click()
    expect(page.locator("#live")).to_be_visible()  # the store's event stream is open

    batch = client.vector_stores.file_batches.create(
        vector_store_id=store.id, file_ids=list(ids.values())
    )
    rows = page.locator("tr.file")
    expect(rows).to_have_count(len(paths), timeout=30_000)
    for name in GOOD:
        row = page.locator(f"tr.file[data-file-id='{ids[name]}']")
        expect(row.locator(".badge")).to_have_text("completed", timeout=120_000)
        expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    bad = page.locator(f"tr.file[data-file-id='{ids['empty.pdf']}']")
    expect(bad.locator(".badge")).to_have_text("failed", timeout=120_000)
    # The failure's cause, as the API reports it, with the stage it failed in.
    vsf = client.vector_stores.files.retrieve(vector_store_id=store.id, file_id=ids["empty.pdf"])
    assert vsf.last_error is not None
    expect(bad.locator(".error-box .message")).to_contain_text(vsf.last_error.message)
    expect(bad.locator(".error-box .where")).to_contain_text("stage")
    expect(page.locator("#batches .badge").first).to_have_text(
        re.compile("completed|failed"), timeout=30_000
    )

    old_job = (vsf.model_extra or {})["job_id"]
    expect(bad.locator(".job-link")).to_have_text(old_job)
    bad.get_by_role("button", name="Retry").click()
    expect(bad.locator(".job-link")).not_to_have_text(old_job, timeout=30_000)
    new_job = bad.locator(".job-link").inner_text()
    # It fails again (the file is still empty); what matters is the new job, shown live.
    expect(bad.locator(".badge")).to_have_text("failed", timeout=120_000)
    with service.http() as http:
        after = http.get(f"/v1/vector_stores/{store.id}/files/{ids['empty.pdf']}").json()
        job = http.get(f"/v1/jobs/{new_job}").json()
        batch_after = http.get(f"/v1/vector_stores/{store.id}/file_batches/{batch.id}").json()
    assert after["job_id"] == new_job != old_job
    assert job["status"] == "failed" and job["file_batch_id"] == batch.id
    assert batch_after["file_counts"] == {
        "in_progress": 0,
        "completed": len(GOOD),
        "failed": 1,
        "cancelled": 0,
        "total": len(GOOD) + 1,
    }

    # The search box runs the store's search and lists the hits.
    page.get_by_label("search query").fill("project governance decision making")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".results .hit").first).to_contain_text(
        "project-governance.md",
        timeout=60_000,  # the first query loads the model
    )

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_dashboard_asset_routes_need_no_key(service: Service) -> None:
    import httpx

    base = f"http://127.0.0.1:{service.port}"
    html = httpx.get(f"{base}/ui")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert '<script src="/ui/app.js">' in html.text
    assert httpx.get(f"{base}/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{base}/ui/app.css").headers["content-type"].startswith("text/css")
    assert httpx.get(f"{base}/ui/secrets.txt").status_code == 404
    assert httpx.get(f"{base}/v1/vector_stores").status_code == 401  # the data is not open


def test_dashboard_shows_ocr_pages_live_and_the_ocr_report(service: Service, page: Any) -> None:
    from playwright.sync_api import expect

    from support.scans import (
        INVOICE,
        LIGHTHOUSE,
        QUARTERMASTER,
        ZEPHYR,
        encode,
        text_page,
        tiff_pages,
    )

    client = service.openai()
    store = client.vector_stores.create(name="scans demo", metadata={"ocr_languages": "eng"})
    scan = encode(text_page(QUARTERMASTER), "PNG")
    dense = text_page(*([QUARTERMASTER, ZEPHYR, INVOICE, LIGHTHOUSE] * 8), size=(2400, 3000))
    ids = {
        name: client.files.create(file=(name, data), purpose="assistants").id
        for name, data in (("scan.png", scan), ("book.tif", tiff_pages(*([dense] * 40))))
    }
    page.goto(f"http://127.0.0.1:{service.port}/ui")
    if page.locator("#api-key").is_visible():  # this test may run alone
        page.fill("#api-key", service.api_key)
        page.click("#key-save")
    page.get_by_role("link", name="scans demo").click()
    expect(page.locator("#live")).to_be_visible()
    client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=list(ids.values()))

    # The 40-page scan shows its OCR stage counting pages live; Cancel stops it midway.
    book = page.locator(f"tr.file[data-file-id='{ids['book.tif']}']")
    expect(book.get_by_role("progressbar")).to_contain_text(
        re.compile(r"ocr · \d+/40 pages"), timeout=120_000
    )
    book.get_by_role("button", name="Cancel").click()
    expect(book.locator(".badge")).to_have_text("cancelled", timeout=120_000)

    png = page.locator(f"tr.file[data-file-id='{ids['scan.png']}']")
    expect(png.locator(".badge")).to_have_text("completed", timeout=120_000)
    page.get_by_label("search query").fill("quartermaster counted salted herring")
    page.get_by_role("button", name="Search").click()
    first = page.locator(".results .hit").first
    expect(first).to_contain_text("scan.png", timeout=60_000)
    expect(first.locator(".place")).to_contain_text("p. 1 · OCR")

    job_id = client.vector_stores.files.retrieve(
        vector_store_id=store.id, file_id=ids["scan.png"]
    ).model_extra["job_id"]
    page.goto(f"http://127.0.0.1:{service.port}/ui#/jobs/{job_id}")
    expect(page.locator("dd", has_text="1 page(s) with eng")).to_be_visible(timeout=30_000)
