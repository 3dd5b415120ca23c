"""The eval history in /ui, in headless Chromium under a strict Content-Security-Policy: the
chart of runs over time with the runs where the store or the settings changed marked, the
per-question difference of two runs, and the schedules page; screenshots go to
test-artifacts/."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.browser import ARTIFACTS, chromium_page, enforce_csp, needs_chromium
from support.runs import ok, wait_job
from support.service import Service

pytestmark = needs_chromium

DOCS = {
    "tides.txt": "Tide tables list the times of high and low water for each harbour, each day.",
    "orchard.txt": "The orchard grows forty kinds of apple; the cider press runs in October.",
    "glaciers.txt": "Glaciers carve U-shaped valleys and leave moraines of rock behind them.",
}
QUESTIONS = [
    {"question": "When is high water in the harbour?", "expected_filenames": ["tides.txt"]},
    {"question": "Which month does the cider press run?", "expected_filenames": ["orchard.txt"]},
    {"question": "What shapes do glaciers give valleys?", "expected_filenames": ["glaciers.txt"]},
]


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with chromium_page(height=1000) as p:
        yield p


@pytest.fixture(scope="module")
def history(service: Service) -> dict[str, Any]:
    """An eval with three runs: the store loses a file before the second, the settings change
    before the third."""
    with service.http() as http:
        store = ok(http.post("/v1/vector_stores", json={"name": "history"}))
        ids = {}
        for name, text in DOCS.items():
            ids[name] = ok(
                http.post(
                    "/v1/files",
                    files={"file": (name, io.BytesIO(text.encode()))},
                    data={"purpose": "assistants"},
                )
            )["id"]
            ok(http.post(f"/v1/vector_stores/{store['id']}/files", json={"file_id": ids[name]}))
        for file_id in ids.values():
            for _ in range(600):
                f = ok(http.get(f"/v1/vector_stores/{store['id']}/files/{file_id}"))
                if f["status"] != "in_progress":
                    break
                time.sleep(0.2)
            assert f["status"] == "completed", f
        evaluation = ok(
            http.post(
                "/v1/evals",
                json={
                    "name": "harbour questions",
                    "data_source_config": {"type": "items", "items": QUESTIONS},
                    "vector_store_id": store["id"],
                    "testing_criteria": [
                        {"name": "vector"},
                        {
                            "name": "hybrid",
                            "ranking_options": {
                                "hybrid_search": {"embedding_weight": 1, "text_weight": 1}
                            },
                        },
                    ],
                },
            )
        )
        runs = []

        def run(name: str) -> None:
            created = ok(http.post(f"/v1/evals/{evaluation['id']}/runs", json={"name": name}))
            assert wait_job(http, created["job_id"])["status"] == "succeeded"
            runs.append(created["id"])

        run("baseline")
        ok(http.delete(f"/v1/vector_stores/{store['id']}/files/{ids['orchard.txt']}"))
        run("orchard removed")
        ok(
            http.post(
                f"/v1/evals/{evaluation['id']}",
                json={
                    "testing_criteria": [{"name": "vector", "ef_search": 64}, {"name": "hybrid"}]
                },
            )
        )
        run("ef_search 64")
        schedule = ok(
            http.post(
                "/v1/schedules",
                json={
                    "name": "nightly harbour eval",
                    "kind": "eval_run",
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Lisbon",
                    "params": {"eval_id": evaluation["id"]},
                },
            )
        )
    return {"eval": evaluation, "runs": runs, "schedule": schedule}


def test_history_chart_and_diff_render_under_a_strict_csp(
    service: Service, page: Any, history: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    base = f"http://127.0.0.1:{service.port}"
    violations = enforce_csp(page, f"{base}/ui")
    page.goto(f"{base}/ui")
    page.fill("#api-key", service.api_key)
    page.click("#key-save")
    page.get_by_role("link", name="evals", exact=True).click()
    page.get_by_role("link", name="harbour questions").click()

    chart = page.locator("svg.chart")
    expect(chart).to_be_visible()
    # Three runs, five metrics each; one run marked for the store, one for the settings.
    expect(chart.locator("circle.point")).to_have_count(15)
    expect(chart.locator("polyline.series")).to_have_count(5)
    expect(chart.locator("line.mark.store")).to_have_count(1)
    expect(chart.locator("line.mark.settings")).to_have_count(1)
    expect(page.locator("tr.eval-run")).to_have_count(3)
    first, second, third = history["runs"]
    marked = chart.locator("line.mark.store")
    store_x = float(marked.get_attribute("x1") or 0)
    point = chart.locator(f"circle.point.hit_at_1[data-run='{second}']")
    assert float(point.get_attribute("cx") or -1) == pytest.approx(store_x)
    settings_x = float(chart.locator("line.mark.settings").get_attribute("x1") or 0)
    point = chart.locator(f"circle.point.hit_at_1[data-run='{third}']")
    assert float(point.get_attribute("cx") or -1) == pytest.approx(settings_x)

    # The difference between the baseline and the run after the orchard left: the cider
    # question got worse (its right answer is gone).
    page.select_option("#diff-base", first)
    page.select_option("#diff-run", second)
    worse = page.locator("tr.diff.worse")
    expect(worse).to_have_count(1)
    expect(worse).to_contain_text("Which month does the cider press run?")
    expect(page.locator(".diff-counts")).to_contain_text("1 worse")
    page.select_option("#criterion", "hybrid")
    expect(page.locator("tr.diff.worse")).to_have_count(1)
    expect(page.locator("svg.chart circle.point")).to_have_count(15)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "eval-history.png"), full_page=True)

    page.get_by_role("link", name="schedules", exact=True).click()
    row = page.locator(f"tr.schedule[data-schedule-id='{history['schedule']['id']}']")
    expect(row.locator(".badge")).to_have_text("active")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".badge")).to_have_text("paused")
    page.screenshot(path=str(ARTIFACTS / "schedules.png"), full_page=True)
    assert not violations, violations

    # The policy really is enforced: an inline style is refused, and reported.
    color = page.evaluate(
        """() => { const d = document.createElement("div"); d.setAttribute("style", "color: red");
                   document.body.append(d); return getComputedStyle(d).color; }"""
    )
    assert color != "rgb(255, 0, 0)"
    expect(page.locator("body")).to_be_visible()
    assert any("style" in v for v in violations), violations
