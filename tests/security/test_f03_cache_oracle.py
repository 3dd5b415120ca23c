"""Finding 3: the embedding cache was shared by every project and jobs counted its hits, so
project B could confirm a guess of A's document (`embeddings_cached: 3` when right, 0 when
one word differed).

Reproduced: A ingests a secret; B ingests the exact guess and a guess one word off. Both of
B's jobs must look the same (computed everything, cached nothing, parsed). Within a project
the cache and the twin-copy shortcut still save the work.
"""

from __future__ import annotations

from typing import Any

import httpx

from support.service import Service
from support.tenants import Tenant, ok, upload, wait_job

SECRET = "\n\n".join(
    f"Board minutes, item {i}: the merger with Northwind closes on the 3rd of May at 41 per share."
    for i in range(12)
)
# Small chunks: several per file, so a file that differs only at its end shares most chunks.
SMALL = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
WRONG = SECRET.replace("41 per share", "42 per share")


def _ingest(http: httpx.Client, store: str, name: str, text: str) -> dict[str, Any]:
    file_id = upload(http, name, text.encode())
    attached = ok(
        http.post(
            f"/v1/vector_stores/{store}/files",
            json={"file_id": file_id, "chunking_strategy": SMALL},
        )
    )
    job = wait_job(http, attached["job_id"])
    assert job["status"] == "succeeded", job
    return job


def _observable(job: dict[str, Any]) -> tuple[Any, ...]:
    """What a job shows that could depend on another project's data."""
    counters = job["counters"]
    return (
        counters["embeddings_cached"],
        counters["checkpoints_reused"],
        "parsing" in job["stage_durations"],
        job["progress"]["total"],
    )


def test_another_projects_texts_are_not_observable(
    svc: Service, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    store_a = ok(a.http.post("/v1/vector_stores", json={"name": "secrets"}))["id"]
    first = _ingest(a.http, store_a, "minutes.txt", SECRET)
    assert first["counters"]["embeddings_computed"] > 0

    store_b = ok(b.http.post("/v1/vector_stores", json={"name": "guesses"}))["id"]
    right = _ingest(b.http, store_b, "guess-right.txt", SECRET)
    wrong = _ingest(b.http, store_b, "guess-wrong.txt", WRONG)
    for job in (right, wrong):
        assert job["counters"]["embeddings_cached"] == 0, job["counters"]
        assert job["counters"]["embeddings_computed"] == job["progress"]["total"]
        assert "parsing" in job["stage_durations"]  # not a twin copy of A's file
    assert _observable(right) == _observable(wrong)

    # Inside one project both shortcuts still work: the same bytes again are a twin copy (no
    # parsing), and the same texts in another file come from the cache.
    again = _ingest(a.http, store_a, "minutes-again.txt", SECRET)
    assert "parsing" not in again["stage_durations"]
    assert again["counters"]["embeddings_computed"] == 0
    store_a2 = ok(a.http.post("/v1/vector_stores", json={"name": "secrets-2"}))["id"]
    reworded = _ingest(a.http, store_a2, "minutes.md", SECRET + "\n\nEnd of minutes.")
    assert reworded["counters"]["embeddings_cached"] > 0


def test_cache_rows_belong_to_their_project(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    with svc.db() as db:
        rows = db.execute(
            "SELECT project_id, count(*) AS n FROM embedding_cache GROUP BY project_id"
        ).fetchall()
    projects = {r["project_id"]: r["n"] for r in rows}
    assert projects.get(a.project_id) and projects.get(b.project_id), projects
