"""Finding 2: request methods were metric labels as sent, so /metrics grew without bound.

Reproduced scaled down: 2,000 requests without a key, with random methods, random ids in
paths, unknown paths and odd statuses. The set of series in /metrics and the size of the
multiprocess directory must not change; a scrape must not hold up other requests (its cost
and the latency around it are printed, only sizes are asserted).
"""

from __future__ import annotations

import random
import string
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.service import Service

SHAPES = ["/v1/files/{id}", "/v1/nope/{id}", "/{id}", "/v1/vector_stores/{id}/search"]


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _metrics_dir_bytes(svc: Service) -> int:
    folder = Path(svc.data_dir) / "metrics"
    return sum(p.stat().st_size for p in folder.glob("*.db"))


def _hostile(client: httpx.Client, n: int, rng: random.Random) -> None:
    for _ in range(n):
        method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(8, 13)))
        if rng.random() < 0.3:
            method = rng.choice(["GET", "POST", "DELETE", "PATCH"])
        ident = "".join(rng.choices(string.ascii_letters + string.digits, k=20))
        path = rng.choice(SHAPES).format(id=ident)
        client.request(method, path, headers={"Authorization": f"Bearer {ident}"})


def test_hostile_traffic_does_not_grow_metrics(svc: Service) -> None:
    base = f"http://127.0.0.1:{svc.port}"
    rng = random.Random(12)
    with httpx.Client(base_url=base, timeout=30) as client:
        # Every label combination this traffic can make, once.
        for method in ("MABCDEFGH", "GET", "POST", "DELETE", "PATCH"):
            for shape in SHAPES:
                client.request(method, shape.format(id="warm"), headers={"Authorization": "x"})
        client.get("/metrics")  # and the scrape's own series
        time.sleep(1.2)  # past the page cache
        before = client.get("/metrics").text
        dir_before = _metrics_dir_bytes(svc)
        _hostile(client, 2000, rng)
        time.sleep(1.2)
        after = client.get("/metrics").text
    assert _series(after) == _series(before)
    assert _metrics_dir_bytes(svc) == dir_before
    # Counters grow by a digit or two; nothing else changes.
    assert abs(len(after) - len(before)) < 2048, (len(before), len(after))
    for label in ('method="other"', 'route="unmatched"', 'status="4xx"'):
        assert label in after
    assert "MABC" not in after and 'status="401"' not in after


def test_scrapes_in_a_loop_leave_requests_alone(svc: Service) -> None:
    """Two scrapers in a tight loop while another client reads /healthz: the page is served
    from its one-second cache, so renders stay few; every read succeeds."""
    base = f"http://127.0.0.1:{svc.port}"
    stop = threading.Event()
    scrapes: list[tuple[float, int]] = []

    def scrape() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = client.get("/metrics")
                scrapes.append((time.perf_counter() - started, len(response.content)))

    threads = [threading.Thread(target=scrape) for _ in range(2)]
    for t in threads:
        t.start()
    latencies = []
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(100):
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
    finally:
        stop.set()
        for t in threads:
            t.join()
    sizes = {size for _, size in scrapes}
    assert scrapes and max(sizes) < 256 * 1024, sizes
    latencies.sort()
    scrape_s = sorted(s for s, _ in scrapes)[len(scrapes) // 2]
    print(
        f"{len(scrapes)} scrapes, median {scrape_s * 1000:.1f} ms, {max(sizes)} bytes; "
        f"/healthz during them: p50 {latencies[50] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
