"""Hybrid search (full text + vectors, reciprocal rank fusion) through raw HTTP, as the
Responses API's `ranking_options.hybrid_search` shapes it; and expired stores refuse search."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.service import Service

DOCS = {
    "pumps.txt": (
        "Maintenance manual for the centrifugal pump. Part number QX-7731-B is the impeller "
        "seal; replace it every two thousand operating hours.",
        {"kind": "manual"},
    ),
    "garden.txt": (
        "Growing tomatoes in a small garden: water in the morning, stake the plants and "
        "remove side shoots for larger fruit.",
        {"kind": "howto"},
    ),
    "seals.txt": (
        "Marine mammals: harbour seals rest on sandbanks at low tide and hunt fish in "
        "estuaries. Seal pups can swim within hours of birth.",
        {"kind": "nature"},
    ),
}


@pytest.fixture(scope="module")
def store(service: Service) -> Iterator[dict[str, Any]]:
    client = service.openai()
    vs = client.vector_stores.create(name="hybrid")
    ids: dict[str, str] = {}
    for name, (text, attrs) in DOCS.items():
        f = client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants")
        vsf = client.vector_stores.files.create_and_poll(
            vector_store_id=vs.id, file_id=f.id, attributes=attrs, poll_interval_ms=200
        )
        assert vsf.status == "completed", vsf.last_error
        ids[name] = f.id
    yield {"id": vs.id, "files": ids}


def _search(service: Service, store_id: str, body: dict[str, Any]) -> httpx.Response:
    with service.http() as http:
        return http.post(f"/v1/vector_stores/{store_id}/search", json=body)


def _hybrid(embedding: float, text: float) -> dict[str, Any]:
    return {
        "ranking_options": {"hybrid_search": {"embedding_weight": embedding, "text_weight": text}}
    }


def test_exact_identifier_found_by_text_half(service: Service, store: dict[str, Any]) -> None:
    body = {"query": "QX-7731-B", **_hybrid(0.5, 1.0)}
    response = _search(service, store["id"], body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data[0]["file_id"] == store["files"]["pumps.txt"]
    scores = [hit["score"] for hit in data]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_text_only_returns_only_matching_chunks(service: Service, store: dict[str, Any]) -> None:
    response = _search(service, store["id"], {"query": "tomatoes", **_hybrid(0.0, 1.0)})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [hit["file_id"] for hit in data] == [store["files"]["garden.txt"]]
    assert data[0]["score"] == pytest.approx(1.0)  # first in the only list with any weight


def test_filters_apply_to_both_halves(service: Service, store: dict[str, Any]) -> None:
    body = {
        "query": "seal replacement for the pump",
        "filters": {"type": "eq", "key": "kind", "value": "nature"},
        **_hybrid(1.0, 1.0),
    }
    data = _search(service, store["id"], body).json()["data"]
    assert {hit["file_id"] for hit in data} == {store["files"]["seals.txt"]}


def test_score_threshold_applies_to_fused_score(service: Service, store: dict[str, Any]) -> None:
    body = {"query": "pump impeller seal", **_hybrid(1.0, 1.0)}
    body["ranking_options"]["score_threshold"] = 0.99
    data = _search(service, store["id"], body).json()["data"]
    # Only a chunk ranked first by both halves reaches 1.0.
    assert [hit["file_id"] for hit in data] == [store["files"]["pumps.txt"]]
    assert data[0]["score"] == pytest.approx(1.0)


def test_absent_hybrid_is_vector_only(service: Service, store: dict[str, Any]) -> None:
    plain = _search(service, store["id"], {"query": "growing vegetables"}).json()["data"]
    assert plain[0]["file_id"] == store["files"]["garden.txt"]
    assert len(plain) == len(DOCS)  # every chunk has a cosine score; no text match needed


@pytest.mark.parametrize(
    "weights",
    [
        {"embedding_weight": 0, "text_weight": 0},
        {"embedding_weight": -1, "text_weight": 1},
        {"embedding_weight": 1},
    ],
)
def test_bad_weights_are_400(
    service: Service, store: dict[str, Any], weights: dict[str, Any]
) -> None:
    body = {"query": "pump", "ranking_options": {"hybrid_search": weights}}
    response = _search(service, store["id"], body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_expired_store_refuses_search(service: Service) -> None:
    client = service.openai()
    vs = client.vector_stores.create(
        name="short-lived", expires_after={"anchor": "last_active_at", "days": 1}
    )
    with service.db() as db:
        db.execute(
            "UPDATE vector_stores SET expires_at = now() - interval '1 minute' WHERE id = %s",
            [vs.id],
        )
    assert client.vector_stores.retrieve(vs.id).status == "expired"
    response = _search(service, vs.id, {"query": "anything"})
    assert response.status_code == 400
    assert "expired" in response.json()["error"]["message"]
