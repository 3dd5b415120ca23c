"""Hostile requests get OpenAI-style 4xx errors that name the parameter, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from prepshelf.api.upload import content_disposition
from prepshelf.domain.files import safe_filename
from prepshelf.keys_cli import is_loopback
from support.service import Service


@pytest.fixture(scope="module")
def http(service: Service) -> Any:
    with service.http() as client:
        yield client


@pytest.fixture(scope="module")
def store(http: httpx.Client) -> str:
    return str(http.post("/v1/vector_stores", json={"name": "v"}).json()["id"])


def _error(r: httpx.Response, status: int, param: str | None = "") -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    if param != "":
        assert error["param"] == param, error
    return dict(error)


def test_malformed_json_and_wrong_types(http: httpx.Client, store: str) -> None:
    headers = {"content-type": "application/json"}
    _error(http.post("/v1/vector_stores", content=b"{nope", headers=headers), 400, None)
    _error(http.post("/v1/vector_stores", content=b"[1, 2]", headers=headers), 400)
    _error(http.post("/v1/vector_stores", content=b"\xff\xfe", headers=headers), 400)
    _error(http.post("/v1/vector_stores", json={"name": 5}), 400, "name")
    _error(http.post("/v1/vector_stores", json={"metadata": "x"}), 400, "metadata")
    _error(http.post("/v1/vector_stores", json={"file_ids": "file-1"}), 400, "file_ids")
    _error(http.post(f"/v1/vector_stores/{store}/search", json={}), 400, "query")
    _error(
        http.post(f"/v1/vector_stores/{store}/search", json={"query": "x", "max_num_results": 0}),
        400,
        "max_num_results",
    )
    _error(http.post(f"/v1/vector_stores/{store}/files", json={"file_id": 7}), 400, "file_id")


def test_unknown_ids_are_404(http: httpx.Client, store: str) -> None:
    for path in ("/v1/files/file-nope", "/v1/vector_stores/vs_nope", "/v1/jobs/job_nope"):
        _error(http.get(path), 404)
    _error(http.post(f"/v1/vector_stores/{store}/files", json={"file_id": "file-nope"}), 404)
    _error(
        http.post(f"/v1/vector_stores/{store}/file_batches", json={"file_ids": ["file-nope"]}), 404
    )
    # Ids full of odd characters are just unknown ids.
    for odd in ("%00", "..%2F..%2Fetc", "x" * 2000, "%E2%80%AE", "'; DROP TABLE files;--"):
        r = http.get(f"/v1/files/{odd}")
        assert r.status_code in (400, 404), (odd, r.status_code, r.text)


def test_oversized_json_bodies_are_413(service: Service, http: httpx.Client, store: str) -> None:
    big = {"name": "x", "description": "y" * (1024 * 1024 + 10)}
    _error(http.post("/v1/vector_stores", json=big), 413, None)
    # Without a Content-Length (chunked), the cap is enforced while reading.
    payload = json.dumps(big).encode()

    def chunks() -> Any:
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    r = http.post(
        "/v1/vector_stores", content=chunks(), headers={"content-type": "application/json"}
    )
    _error(r, 413, None)
    # The server is still fine afterwards.
    assert http.get(f"/v1/vector_stores/{store}").status_code == 200


def test_too_many_files_per_batch(http: httpx.Client, store: str) -> None:
    ids = [f"file-{i:06d}" for i in range(2001)]
    _error(
        http.post(f"/v1/vector_stores/{store}/file_batches", json={"file_ids": ids}),
        400,
        "file_ids",
    )
    _error(
        http.post(f"/v1/vector_stores/{store}/file_batches", json={"file_ids": []}),
        400,
        "file_ids",
    )
    both = {"file_ids": ["file-1"], "files": [{"file_id": "file-1"}]}
    _error(http.post(f"/v1/vector_stores/{store}/file_batches", json=both), 400)


@pytest.mark.parametrize(
    "filters",
    [
        "year > 3",
        {"type": "eq"},
        {"type": "eq", "key": "year"},
        {"type": "nope", "key": "year", "value": 1},
        {"type": "and", "filters": "x"},
        {"type": "and", "filters": [{"type": "gt", "key": "y", "value": {"a": 1}}]},
        {"type": "in", "key": "y", "value": [[1]]},
        {"type": "gt", "key": "y", "value": "abc"},
        {"type": "or", "filters": [{"type": "or", "filters": []}]},
    ],
)
def test_invalid_filters(http: httpx.Client, store: str, filters: Any) -> None:
    r = http.post(f"/v1/vector_stores/{store}/search", json={"query": "x", "filters": filters})
    if r.status_code == 200:  # an accepted-but-empty filter is fine; a 5xx is not
        return
    error = _error(r, 400)
    assert error["param"] and error["param"].startswith("filters")


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "static"},
        {"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}},
        {"type": "static", "static": {"max_chunk_size_tokens": 5000, "chunk_overlap_tokens": 0}},
        {"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150}},
        {"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": -1}},
        {"type": "semantic"},
        "auto",
    ],
)
def test_invalid_chunking(http: httpx.Client, strategy: Any) -> None:
    file_id = http.post(
        "/v1/files", files={"file": ("a.txt", b"hello there")}, data={"purpose": "assistants"}
    ).json()["id"]
    r = http.post("/v1/vector_stores", json={"file_ids": [file_id], "chunking_strategy": strategy})
    error = _error(r, 400)
    assert error["param"] and error["param"].startswith("chunking_strategy"), error


def test_bad_pagination(http: httpx.Client, store: str) -> None:
    for params, param in (
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "file-nope"}, "after"),
        ({"before": "file-nope"}, "before"),
        ({"after": "x" * 500}, "after"),
    ):
        _error(http.get("/v1/files", params=params), 400, param)
    _error(http.get(f"/v1/vector_stores/{store}/files", params={"after": "file-x"}), 400, "after")
    _error(http.get(f"/v1/vector_stores/{store}/files", params={"filter": "done"}), 400, "filter")
    _error(http.get("/v1/jobs", params={"status": "bogus"}), 400, "status")


def test_upload_limits_and_bad_multipart(http: httpx.Client) -> None:
    _error(http.post("/v1/files", json={"purpose": "assistants"}), 400, "file")
    _error(http.post("/v1/files", data={"purpose": "assistants"}), 400, "file")
    r = http.post("/v1/files", files={"file": ("a.txt", b"x")}, data={"purpose": "nope"})
    _error(r, 400, "purpose")
    many = {f"f{i}": "v" for i in range(40)}
    r = http.post("/v1/files", files={"file": ("a.txt", b"x")}, data={"purpose": "batch", **many})
    _error(r, 400)
    r = http.post(
        "/v1/files",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 400, r.text


def test_download_name_is_safe(http: httpx.Client) -> None:
    name = 'evil"\r\nSet-Cookie: x=1;\u202e.txt'
    up = http.post("/v1/files", files={"file": (name, b"data")}, data={"purpose": "assistants"})
    assert up.status_code == 200, up.text
    stored = up.json()["filename"]
    assert "\r" not in stored and "\n" not in stored and "\u202e" not in stored
    r = http.get(f"/v1/files/{up.json()['id']}/content")
    assert r.status_code == 200 and r.content == b"data"
    assert "set-cookie" not in r.headers
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="') and "filename*=UTF-8''" in disposition


def test_filename_helpers() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert safe_filename("..") == "upload" and safe_filename("\x00\x01") == "upload"
    assert safe_filename("a\u202eb\u200b.txt") == "ab.txt"
    assert len(safe_filename("x" * 1000)) == 255
    value = content_disposition('r\u00e9sum\u00e9 "final";.pdf')
    assert value == (
        'attachment; filename="r_sum_ _final__.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%3B.pdf"
    )
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
