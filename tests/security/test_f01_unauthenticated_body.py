"""Finding 1: a caller without a key made the API buffer gigabytes before answering 401.

Reproduced scaled down: headers that promise a huge body (multipart, JSON, chunked) on every
kind of route, and bodies of 50 MB streamed by several connections at once. The 401 must come
with no body byte sent at all, close the connection, and leave the API's memory where it was.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from support.attack import (
    MB,
    RssSampler,
    closed_by_peer,
    connect,
    head,
    read_response,
    send_until_refused,
)
from support.service import Service
from support.tenants import Tenant

GIB = 1024**3
MULTIPART = "multipart/form-data; boundary=xyz"

ROUTES = [
    ("POST", "/v1/vector_stores"),
    ("POST", "/v1/admin/projects"),
    ("POST", "/v1/files"),  # the upload route itself
    ("POST", "/v1/vector_stores/vs_x/search"),
    ("POST", "/v1/embeddings"),
    ("PUT", "/v1/files"),  # a method the route does not have
    ("POST", "/v1/no/such/route"),
    ("GET", "/v1/files"),  # a body on a GET
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "framing",
    [
        {"Content-Type": MULTIPART, "Content-Length": str(2 * GIB)},
        {"Content-Type": "application/json", "Content-Length": str(2 * GIB)},
        {"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"},
    ],
    ids=["multipart", "json", "chunked"],
)
@pytest.mark.parametrize("auth", [None, "Bearer sk-prepshelf-" + "A" * 43, "Basic Zm9vOmJhcg=="])
def test_401_comes_before_any_body_byte(
    svc: Service, method: str, path: str, framing: dict[str, str], auth: str | None
) -> None:
    headers = dict(framing)
    if auth:
        headers["Authorization"] = auth
    with connect(svc.port) as sock:
        sock.sendall(head(method, path, headers))
        # Not one body byte is sent: a server that reads the body first never answers, and
        # read_response raises after its (generous) safety timeout.
        response = read_response(sock, timeout_s=15)
        assert response.status == 401, response
        assert response.headers.get("connection") == "close"
        assert b"authentication_error" in response.body
        assert closed_by_peer(sock), "the server kept the connection open for the body"


def _stream_unauthenticated(port: int, total: int) -> int:
    with connect(port) as sock:
        sock.sendall(
            head(
                "POST",
                "/v1/vector_stores",
                {"Content-Type": MULTIPART, "Content-Length": str(total)},
            )
        )
        return send_until_refused(sock, total)


def test_streamed_bodies_leave_memory_alone(svc: Service) -> None:
    """Eight connections offer 50 MB each at once: the API's RSS must not follow."""
    assert svc.api is not None
    with RssSampler(svc.api.pid) as rss, ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(lambda _: _stream_unauthenticated(svc.port, 50 * MB), range(8)))
    print(f"API RSS peak growth {rss.peak_growth / MB:.1f} MB; sent per connection {sent}")
    assert rss.peak_growth < 32 * MB, (rss.peak_growth, sent)
    # The server shut each line early: nowhere near 50 MB got through (socket buffers only).
    assert max(sent) < 50 * MB, sent
    # And it still answers everyone else.
    with svc.http() as http:
        assert http.get("/v1/files").status_code == 200


def test_a_key_does_not_open_json_routes_to_multipart(
    svc: Service, tenants: tuple[Tenant, Tenant]
) -> None:
    """With a valid key, a JSON route refuses a multipart body (415) and an oversized one
    (413), both before reading it; only the upload route takes multipart."""
    a, _ = tenants
    auth = {"Authorization": f"Bearer {a.key}"}
    for framing, status in (
        ({"Content-Type": MULTIPART, "Content-Length": str(2 * GIB)}, 415),
        ({"Content-Type": "application/json", "Content-Length": str(2 * GIB)}, 413),
        ({"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"}, 415),
    ):
        with connect(svc.port) as sock:
            sock.sendall(head("POST", "/v1/vector_stores", {**auth, **framing}))
            response = read_response(sock, timeout_s=15)
            assert response.status == status, response
            assert response.headers.get("connection") == "close"
            assert closed_by_peer(sock)
    # The upload route refuses an over-limit declared length at once too.
    with connect(svc.port) as sock:
        sock.sendall(
            head(
                "POST",
                "/v1/files",
                {**auth, "Content-Type": MULTIPART, "Content-Length": str(2 * GIB)},
            )
        )
        response = read_response(sock, timeout_s=15)
        assert response.status == 413 and b"upload limit" in response.body, response


def test_chunked_json_over_the_cap_is_cut_at_the_cap(
    svc: Service, tenants: tuple[Tenant, Tenant]
) -> None:
    """Chunked (no length declared): the gate stops reading at the 1 MiB JSON cap."""
    a, _ = tenants
    assert svc.api is not None
    headers = {
        "Authorization": f"Bearer {a.key}",
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    with RssSampler(svc.api.pid) as rss, connect(svc.port) as sock, ThreadPoolExecutor(1) as pool:
        sock.sendall(head("POST", "/v1/vector_stores", headers))
        # Read while sending: the answer comes while the client is still pushing bytes.
        answer = pool.submit(read_response, sock, timeout_s=30)
        sent = 0
        try:
            while sent < 50 * MB and not answer.done():
                sock.sendall(chunk)
                sent += len(chunk)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        response = answer.result()
    assert response.status == 413, response
    assert sent < 50 * MB
    assert rss.peak_growth < 32 * MB
