"""Attacks beyond the report, at the HTTP layer: huge and many headers, headers and bodies
trickled a byte at a time, odd methods, query strings and paths, raw bytes, broken framing.

Each must end in a 4xx or a closed connection (never a 5xx), promptly, and leave the server
answering everyone else.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from support.attack import closed_by_peer, connect, head, read_response
from support.service import Service
from support.tenants import Tenant, ok, upload


def _healthy(svc: Service) -> None:
    assert httpx.get(f"http://127.0.0.1:{svc.port}/healthz", timeout=10).status_code == 200


def _raw_status(svc: Service, request: bytes) -> int | None:
    """The status of one raw request, or None if the server just closed the line."""
    with connect(svc.port, timeout_s=15) as sock:
        try:
            sock.sendall(request)
            return read_response(sock, timeout_s=15).status
        except (ConnectionError, BrokenPipeError):
            return None


def test_huge_header_is_refused(svc: Service) -> None:
    # h11 refuses headers still incomplete past 16 KiB; headers that arrive whole in one read
    # may be a little larger (bounded by the socket read), and are then just unauthenticated.
    assert _raw_status(svc, head("GET", "/v1/files", {"X-Big": "a" * 17 * 1024})) in (
        400,
        401,
        431,
        None,
    )
    assert _raw_status(svc, head("GET", "/v1/files", {"X-Big": "a" * 1024 * 1024})) in (
        400,
        431,
        None,
    )
    _healthy(svc)


def test_many_headers(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    many = {f"X-H{i}": "v" for i in range(1500)}  # just under h11's 16 KiB of headers
    status = _raw_status(
        svc, head("GET", "/v1/files", {**many, "Authorization": f"Bearer {a.key}"})
    )
    assert status in (200, 400, 431, None)
    too_many = {f"X-H{i}": "v" for i in range(50_000)}
    assert _raw_status(svc, head("GET", "/v1/files", too_many)) in (400, 431, None)
    _healthy(svc)


def _trickle(sock: socket.socket, data: bytes, every_s: float, stop: threading.Event) -> int:
    sent = 0
    for byte in data:
        if stop.is_set():
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
        time.sleep(every_s)
    return sent


def test_slowloris_headers_are_cut_off(svc: Service) -> None:
    """Headers trickled one byte every 0.3 s (30 s worth): the server's 2 s header deadline
    closes the line long before the client is done."""
    request = head("GET", "/v1/files", {"X-Slow": "s" * 100})
    with connect(svc.port, timeout_s=30) as sock:
        stop = threading.Event()
        sender = threading.Thread(target=_trickle, args=(sock, request, 0.3, stop))
        sender.start()
        try:
            assert closed_by_peer(sock, timeout_s=20), "a trickled request kept its connection"
        finally:
            stop.set()
            sender.join()
    _healthy(svc)


def test_idle_connections_are_closed(svc: Service) -> None:
    socks = [connect(svc.port, timeout_s=30) for _ in range(50)]
    try:
        assert all(closed_by_peer(s, timeout_s=20) for s in socks)
    finally:
        for s in socks:
            s.close()
    _healthy(svc)


def test_slowloris_json_body_times_out(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    """A JSON body trickled a byte every 1.5 s (under the 2 s idle timeout): the 4 s total
    limit ends it with a 408, and the connection is closed."""
    a, _ = tenants
    body = b'{"name": "' + b"s" * 200 + b'"}'
    headers = {
        "Authorization": f"Bearer {a.key}",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    with connect(svc.port, timeout_s=30) as sock:
        sock.sendall(head("POST", "/v1/vector_stores", headers))
        stop = threading.Event()
        sender = threading.Thread(target=_trickle, args=(sock, body, 1.5, stop))
        sender.start()
        try:
            response = read_response(sock, timeout_s=30)
        finally:
            stop.set()
            sender.join()
        assert response.status == 408, response
        assert response.headers.get("connection") == "close"
        assert b"request_timeout" in response.body


def test_stalled_json_body(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    headers = {
        "Authorization": f"Bearer {a.key}",
        "Content-Type": "application/json",
        "Content-Length": "1000",
    }
    with connect(svc.port, timeout_s=30) as sock:
        sock.sendall(head("POST", "/v1/vector_stores", headers) + b'{"name": "st')
        response = read_response(sock, timeout_s=30)
        assert response.status == 408 and b"stalled" in response.body, response


def test_expect_continue_without_key_sends_no_continue(svc: Service) -> None:
    headers = {"Content-Length": str(10**9), "Expect": "100-continue"}
    with connect(svc.port) as sock:
        sock.sendall(head("POST", "/v1/files", headers))
        response = read_response(sock)
    assert response.status == 401  # not "100 Continue": the client never sends its body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/files/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/files?limit=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\n",
        b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    ],
)
def test_malformed_requests(svc: Service, request_bytes: bytes) -> None:
    status = _raw_status(svc, request_bytes)
    assert status is None or 400 <= status < 500, status
    _healthy(svc)


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "PROPFIND", "M" * 200, "get"])
def test_odd_methods(svc: Service, tenants: tuple[Tenant, Tenant], method: str) -> None:
    a, _ = tenants
    for path in ("/v1/files", "/healthz", "/ui", "/nowhere"):
        r = a.http.request(method, path)
        assert r.status_code < 500, (method, path, r.status_code)
        r = httpx.request(method, f"http://127.0.0.1:{svc.port}{path}")
        assert r.status_code < 500, (method, path, r.status_code)


ODD_QUERIES = [
    "limit=%ff",
    "limit=99999999999999999999999999",
    "limit=1e400",
    "limit=NaN",
    "limit=1&limit=2&limit=3",
    "after=%00",
    "after=%ED%A0%80",  # a lone surrogate, UTF-8 encoded
    "order=%E2%80%AE",
    "%ff=%fe",
    "a[b][c]=d",
    "=",
    "&&&",
    "purpose=" + "p" * 8000,
    "status=queued%00",
    "created_after=-1",
    "created_after=99999999999999999999",
    "filter=" + "%25" * 500,
]


def test_odd_query_strings(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    store = ok(a.http.post("/v1/vector_stores", json={"name": "q"}))["id"]
    paths = [
        "/v1/files",
        "/v1/vector_stores",
        f"/v1/vector_stores/{store}/files",
        f"/v1/vector_stores/{store}/file_batches",
        "/v1/jobs",
        "/v1/batches",
        "/v1/audit",
        "/v1/events",
    ]
    for path in paths:
        for query in ODD_QUERIES:
            r = a.http.get(f"{path}?{query}", timeout=10)
            assert r.status_code < 500, (path, query, r.status_code, r.text[:200])


ODD_IDS = ["%00", "%ff%fe", "..%2F..%2Fadmin", "x" * 3000, "%E2%80%AE", "'%20OR%201=1--", "%2e%2e"]


def test_odd_path_params(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    file_id = upload(a.http, "p.txt", b"p")
    for odd in ODD_IDS:
        for method, path in (
            ("GET", f"/v1/files/{odd}"),
            ("GET", f"/v1/files/{odd}/content"),
            ("DELETE", f"/v1/files/{odd}"),
            ("GET", f"/v1/vector_stores/{odd}"),
            ("POST", f"/v1/vector_stores/{odd}/search"),
            ("GET", f"/v1/vector_stores/{odd}/files/{file_id}"),
            ("GET", f"/v1/jobs/{odd}"),
            ("GET", f"/v1/jobs/{odd}/events"),
            ("POST", f"/v1/jobs/{odd}/retry"),
            ("GET", f"/v1/batches/{odd}"),
            ("GET", f"/ui/{odd}"),
        ):
            body = {"query": "x"} if method == "POST" else None
            r = a.http.request(method, path, json=body, timeout=10)
            assert r.status_code < 500, (method, path, r.status_code, r.text[:200])


def test_a_flood_of_public_probes(svc: Service, tenants: tuple[Tenant, Tenant]) -> None:
    """1,000 keyless requests to the public routes that cost work (a database query, the
    whole schema): answered from the one-second cache, so a tenant's reads meanwhile succeed
    and the connection pool is never emptied (a /readyz that found no free connection would
    answer 503)."""
    _, b = tenants
    base = f"http://127.0.0.1:{svc.port}"

    async def flood() -> tuple[list[int], list[int]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            probes = [
                http.get(("/readyz", "/openapi.json", "/metrics")[i % 3]) for i in range(1000)
            ]

            async def reads() -> list[int]:
                auth = {"Authorization": f"Bearer {b.key}"}
                return [(await http.get("/v1/files", headers=auth)).status_code for _ in range(20)]

            *done, real = await asyncio.gather(*probes, reads())
        return [r.status_code for r in done], real

    probes, reads = asyncio.run(flood())
    assert set(probes) == {200} and set(reads) == {200}
