"""Vector stores through the official SDK: CRUD, attach, batches, search, filters, delete."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import openai
import pytest

from support.service import Service

DOCS = {
    "apples.txt": "Apples are crunchy fruit grown in orchards. Granny Smith apples are green and "
    "tart, while Fuji apples are sweet. Apple trees blossom in spring.",
    "volcano.txt": "A volcano erupts when magma rises through the crust. Lava flows and ash "
    "clouds follow an eruption; Mount Etna in Sicily is very active.",
    "tax.txt": "Income tax returns are due in April. Deductions reduce taxable income, and "
    "credits reduce the tax owed directly.",
}


def _upload(client: Any, name: str, text: str) -> str:
    return str(client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id)


@pytest.fixture(scope="module")
def store(service: Service) -> dict[str, Any]:
    client = service.openai()
    vs = client.vector_stores.create(name="fruit-and-fire", metadata={"team": "docs"})
    ids = {name: _upload(client, name, text) for name, text in DOCS.items()}
    years = {"apples.txt": 2021, "volcano.txt": 2023, "tax.txt": 2024}
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=vs.id,
        files=[
            {"file_id": fid, "attributes": {"topic": name.split(".")[0], "year": years[name]}}
            for name, fid in ids.items()
        ],
    )
    assert batch.file_counts.completed == 3, batch
    return {"id": vs.id, "files": ids}


def test_store_shape_and_counts(service: Service, store: dict[str, Any]) -> None:
    client = service.openai()
    vs = client.vector_stores.retrieve(store["id"])
    assert vs.id.startswith("vs_") and vs.object == "vector_store"
    assert vs.status == "completed"
    assert vs.file_counts.completed == 3 and vs.file_counts.total == 3
    assert vs.file_counts.in_progress == 0
    assert vs.usage_bytes > 0
    assert vs.metadata == {"team": "docs"}
    listed = [v.id for v in client.vector_stores.list()]
    assert store["id"] in listed


def test_store_file_object_shape(service: Service, store: dict[str, Any]) -> None:
    client = service.openai()
    fid = store["files"]["apples.txt"]
    vsf = client.vector_stores.files.retrieve(file_id=fid, vector_store_id=store["id"])
    assert vsf.object == "vector_store.file" and vsf.status == "completed"
    assert vsf.last_error is None
    assert vsf.attributes == {"topic": "apples", "year": 2021}
    assert vsf.chunking_strategy.type == "static"
    extra = vsf.model_extra or {}
    assert extra["job_id"].startswith("job_")
    with service.http() as http:
        job = http.get(f"/v1/jobs/{extra['job_id']}").json()
    assert job["status"] == "succeeded" and job["file_id"] == fid
    assert job["progress"]["done"] == job["progress"]["total"] >= 1
    assert job["attempts"] == 1


def test_poll_hint_header(service: Service, store: dict[str, Any]) -> None:
    fid = store["files"]["apples.txt"]
    with service.http() as http:
        response = http.get(f"/v1/vector_stores/{store['id']}/files/{fid}")
    assert response.headers["openai-poll-after-ms"] == "200"


def test_search_finds_the_right_document(service: Service, store: dict[str, Any]) -> None:
    client = service.openai()
    for question, expected in [
        ("which apples are sweet?", "apples.txt"),
        ("lava and magma eruption", "volcano.txt"),
        ("when are tax returns due", "tax.txt"),
    ]:
        results = list(client.vector_stores.search(vector_store_id=store["id"], query=question))
        assert results, question
        assert results[0].filename == expected, (question, [r.filename for r in results])
        assert 0 <= results[0].score <= 1
        assert results[0].content[0].type == "text" and results[0].content[0].text


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"type": "eq", "key": "topic", "value": "volcano"}, {"volcano.txt"}),
        ({"type": "ne", "key": "topic", "value": "volcano"}, {"apples.txt", "tax.txt"}),
        ({"type": "gte", "key": "year", "value": 2023}, {"volcano.txt", "tax.txt"}),
        ({"type": "lt", "key": "year", "value": 2023}, {"apples.txt"}),
        ({"type": "in", "key": "topic", "value": ["apples", "tax"]}, {"apples.txt", "tax.txt"}),
        ({"type": "nin", "key": "topic", "value": ["apples", "tax"]}, {"volcano.txt"}),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "gt", "key": "year", "value": 2021},
                    {"type": "ne", "key": "topic", "value": "tax"},
                ],
            },
            {"volcano.txt"},
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "year", "value": 2021},
                    {"type": "eq", "key": "topic", "value": "tax"},
                ],
            },
            {"apples.txt", "tax.txt"},
        ),
    ],
)
def test_filters_restrict_results(
    service: Service, store: dict[str, Any], filters: Any, expected: set[str]
) -> None:
    results = service.openai().vector_stores.search(
        vector_store_id=store["id"],
        query="fruit, volcanoes or taxes",
        filters=filters,
        max_num_results=50,
    )
    assert {r.filename for r in results} == expected


def test_invalid_filter_is_400_naming_param(service: Service, store: dict[str, Any]) -> None:
    with service.http() as http:
        response = http.post(
            f"/v1/vector_stores/{store['id']}/search",
            json={"query": "x", "filters": {"type": "regex", "key": "a", "value": "b"}},
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "filters.type"


def test_rewrite_query_is_refused_not_ignored(service: Service, store: dict[str, Any]) -> None:
    """No language model here to rewrite with: a clear 400, never a silent no-op."""
    with pytest.raises(openai.BadRequestError) as info:
        service.openai().vector_stores.search(
            vector_store_id=store["id"], query="parental leave", rewrite_query=True
        )
    assert info.value.body["param"] == "rewrite_query"  # type: ignore[index]
    assert "not supported" in str(info.value.message)
    # false (what the SDK sends when told nothing) is the plain search, accepted.
    with service.http() as http:
        r = http.post(
            f"/v1/vector_stores/{store['id']}/search",
            json={"query": "parental leave", "rewrite_query": False},
        )
    assert r.status_code == 200 and r.json()["search_query"] == ["parental leave"]


def test_a_query_that_is_not_unicode_is_400(service: Service, store: dict[str, Any]) -> None:
    with service.http() as http:
        r = http.post(
            f"/v1/vector_stores/{store['id']}/search",
            content=b'{"query": "leave \\udc80 policy"}',
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("query")


def test_score_threshold(service: Service, store: dict[str, Any]) -> None:
    results = service.openai().vector_stores.search(
        vector_store_id=store["id"],
        query="sweet apples",
        ranking_options={"score_threshold": 0.99},
    )
    assert list(results) == []


def test_static_chunking_beyond_window_is_400(service: Service, store: dict[str, Any]) -> None:
    client = service.openai()
    fid = _upload(client, "x.txt", "some text")
    with pytest.raises(openai.BadRequestError) as info:
        client.vector_stores.files.create(
            vector_store_id=store["id"],
            file_id=fid,
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
            },
        )
    error = info.value.body
    assert isinstance(error, dict)
    assert error["param"] == "chunking_strategy.static.max_chunk_size_tokens"
    assert "254" in error["message"] and "all-MiniLM-L6-v2" in error["message"]


def test_static_chunking_within_window_is_honoured(service: Service) -> None:
    client = service.openai()
    vs = client.vector_stores.create(name="static")
    text = " ".join(f"sentence number {i} talks about topic {i % 7}." for i in range(300))
    fid = _upload(client, "long.txt", text)
    vsf = client.vector_stores.files.create_and_poll(
        vector_store_id=vs.id,
        file_id=fid,
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
        },
    )
    assert vsf.status == "completed"
    assert vsf.chunking_strategy.static.max_chunk_size_tokens == 100  # type: ignore[union-attr]
    with service.db() as db:
        rows = db.execute(
            "SELECT token_count FROM chunks WHERE vector_store_id = %s ORDER BY chunk_index",
            [vs.id],
        ).fetchall()
    assert len(rows) > 10
    assert max(r["token_count"] for r in rows) <= 100


def test_deleting_a_file_removes_its_chunks_from_search(service: Service) -> None:
    client = service.openai()
    vs = client.vector_stores.create(name="delete-me")
    fid = _upload(client, "whales.txt", "Blue whales are the largest animals ever known.")
    other = _upload(client, "bread.txt", "Sourdough bread rises with wild yeast.")
    client.vector_stores.file_batches.create_and_poll(vector_store_id=vs.id, file_ids=[fid, other])
    hits = client.vector_stores.search(vector_store_id=vs.id, query="largest animal")
    assert any(h.file_id == fid for h in hits)

    deleted = client.vector_stores.files.delete(file_id=fid, vector_store_id=vs.id)
    assert deleted.deleted
    hits = client.vector_stores.search(vector_store_id=vs.id, query="largest animal")
    assert all(h.file_id != fid for h in hits)
    assert client.vector_stores.retrieve(vs.id).file_counts.total == 1
    # The File object itself remains.
    assert client.files.retrieve(fid).id == fid
    with service.db() as db:
        left = db.execute("SELECT count(*) AS n FROM chunks WHERE file_id = %s", [fid]).fetchone()
    assert left is not None and left["n"] == 0


def test_update_and_delete_store(service: Service) -> None:
    client = service.openai()
    vs = client.vector_stores.create(name="old")
    updated = client.vector_stores.update(
        vector_store_id=vs.id,
        name="new",
        metadata={"k": "v"},
        expires_after={"anchor": "last_active_at", "days": 3},
    )
    assert updated.name == "new" and updated.metadata == {"k": "v"}
    assert updated.expires_at is not None and updated.expires_after is not None
    assert client.vector_stores.delete(vs.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(vs.id)


def test_upload_and_poll_single_file(service: Service) -> None:
    client = service.openai()
    vs = client.vector_stores.create(name="single")
    vsf = client.vector_stores.files.upload_and_poll(
        vector_store_id=vs.id, file=("owl.md", io.BytesIO(b"# Owls\n\nOwls hunt at night."))
    )
    assert vsf.status == "completed"
    content = client.vector_stores.files.content(file_id=vsf.id, vector_store_id=vs.id)
    assert "Owls hunt at night" in "".join(c.text or "" for c in content)


def test_batch_files_listing_and_filter(service: Service) -> None:
    client = service.openai()
    vs = client.vector_stores.create(name="batch-list")
    good = _upload(client, "ok.txt", "perfectly fine text about gardening")
    empty = _upload(client, "empty.txt", "   ")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=vs.id, file_ids=[good, empty]
    )
    assert batch.object == "vector_store.files_batch"
    assert batch.file_counts.completed == 1 and batch.file_counts.failed == 1
    failed = list(
        client.vector_stores.file_batches.list_files(
            batch_id=batch.id, vector_store_id=vs.id, filter="failed"
        )
    )
    assert [f.id for f in failed] == [empty]
    assert failed[0].last_error is not None
    assert failed[0].last_error.code == "invalid_file"
    assert "empty.txt" in failed[0].last_error.message
    # Its jobs name the file batch as such; both filters find them (batch_id as clients
    # written before file_batch_id existed use it).
    with service.http() as http:
        for param in ("file_batch_id", "batch_id"):
            jobs = http.get("/v1/jobs", params={param: batch.id}).json()["data"]
            assert sorted(j["file_id"] for j in jobs) == sorted([good, empty]), param
            assert all((j["file_batch_id"], j["batch_id"]) == (batch.id, None) for j in jobs)
            links = jobs[0]["links"]
            assert links["file_batch"] == f"/v1/vector_stores/{vs.id}/file_batches/{batch.id}"
            assert links["batch"] is None
        assert http.get("/v1/jobs", params={"file_batch_id": "vsfb_nope"}).json()["data"] == []


def test_cancel_batch_ends_every_file(service: Service) -> None:
    client = service.openai()
    vs = client.vector_stores.create(name="cancel")
    ids = [_upload(client, f"c{i}.txt", f"document {i} " * 2000) for i in range(6)]
    batch = client.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=ids)
    cancelled = client.vector_stores.file_batches.cancel(batch_id=batch.id, vector_store_id=vs.id)
    deadline = time.monotonic() + 60
    while cancelled.file_counts.in_progress and time.monotonic() < deadline:
        time.sleep(0.3)
        cancelled = client.vector_stores.file_batches.retrieve(
            batch_id=batch.id, vector_store_id=vs.id
        )
    counts = cancelled.file_counts
    assert counts.in_progress == 0
    assert counts.cancelled >= 1
    assert counts.cancelled + counts.completed == counts.total == 6
    assert cancelled.status == "cancelled"
    with service.db() as db:
        for row in db.execute(
            "SELECT file_id, status FROM vector_store_files WHERE vector_store_id = %s", [vs.id]
        ).fetchall():
            n = db.execute(
                "SELECT count(*) AS n FROM chunks WHERE file_id = %s", [row["file_id"]]
            ).fetchone()
            assert n is not None
            assert (n["n"] > 0) == (row["status"] == "completed")


def test_other_ids_are_404(service: Service, store: dict[str, Any]) -> None:
    client = service.openai()
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve("vs_nope")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id="file-nope", vector_store_id=store["id"])
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.retrieve(
            batch_id="vsfb_nope", vector_store_id=store["id"]
        )
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=store["id"], file_id="file-nope")


def test_malformed_json_is_400(service: Service) -> None:
    response = httpx.post(
        f"{service.base_url}/vector_stores",
        content=b"{not json",
        headers={"Authorization": f"Bearer {service.api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
