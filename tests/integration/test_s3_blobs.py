"""Blobs in an S3-compatible bucket (moto's server on loopback): upload through /v1/files,
ingest (the parser reads a temporary download), stream the content back, delete; and a
300 MB upload whose API-process memory stays bounded while its bytes round-trip intact."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from support.s3 import MotoServer
from support.service import Service

BUCKET, PREFIX = "prepshelf-test", "tenant-a/blobs"
BIG_BYTES = 300 * 1024 * 1024
RSS_GROWTH_LIMIT = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    server.client().create_bucket(Bucket=BUCKET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_service(
    database_url: str, moto: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("s3svc")),
        workers=1,
        extra_env={**moto.env(BUCKET, PREFIX), "PREPSHELF_TORCH_THREADS": "1"},
    ) as svc:
        yield svc


def _object_keys(moto: MotoServer) -> set[str]:
    resp = moto.client().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    return {o["Key"] for o in resp.get("Contents", [])}


def test_upload_ingest_search_download_delete(s3_service: Service, moto: MotoServer) -> None:
    client = s3_service.openai()
    text = "The lighthouse keeper of Skerryvore logs the fog signal every night.\n" * 50
    created = client.files.create(
        file=("lighthouse.txt", io.BytesIO(text.encode())), purpose="assistants"
    )
    key = f"{PREFIX}/files/{created.id}"
    assert key in _object_keys(moto)
    assert not list((s3_service.data_dir / "blobs").rglob("*"))  # nothing written locally

    assert client.files.content(created.id).read() == text.encode()

    store = client.vector_stores.create(name="s3")
    vsf = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=created.id, poll_interval_ms=200
    )
    assert vsf.status == "completed", vsf.last_error
    hits = client.vector_stores.search(store.id, query="fog signal at the lighthouse")
    assert hits.data and hits.data[0].file_id == created.id
    # The parser's temporary download is gone once the job is done.
    assert not list((s3_service.data_dir / "tmp").glob("blob-*"))

    client.files.delete(created.id)
    deadline = time.monotonic() + 10
    while key in _object_keys(moto) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert key not in _object_keys(moto)


class _PeakRss:
    """Samples a process's resident memory in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.baseline = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _multipart_body(boundary: str, digest: Any) -> Iterator[bytes]:
    """A multipart/form-data body with a 300 MB file part, generated as it is sent."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    block = bytearray(hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32))
    for i in range(BIG_BYTES // len(block)):
        block[:8] = i.to_bytes(8, "big")  # every MiB differs
        data = bytes(block)
        digest.update(data)
        yield data
    yield f"\r\n--{boundary}--\r\n".encode()


def test_300mb_upload_streams_with_bounded_memory(s3_service: Service, moto: MotoServer) -> None:
    assert s3_service.api is not None
    boundary = "prepshelf-boundary-7d1c"
    sent = hashlib.sha256()
    with (
        httpx.Client(
            base_url=f"http://127.0.0.1:{s3_service.port}",
            headers={"Authorization": f"Bearer {s3_service.api_key}"},
            timeout=300,
        ) as http,
        _PeakRss(s3_service.api.pid) as rss,
    ):
        response = http.post(
            "/v1/files",
            content=_multipart_body(boundary, sent),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code == 200, response.text
    file_id = response.json()["id"]
    assert response.json()["bytes"] == BIG_BYTES
    growth = rss.peak - rss.baseline
    print(f"API peak RSS growth during a 300 MB upload: {growth / 2**20:.1f} MiB")
    assert growth < RSS_GROWTH_LIMIT

    head = moto.client().head_object(Bucket=BUCKET, Key=f"{PREFIX}/files/{file_id}")
    assert head["ContentLength"] == BIG_BYTES

    received = hashlib.sha256()
    size = 0
    with (
        s3_service.http() as http,
        http.stream("GET", f"/v1/files/{file_id}/content", timeout=300) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received.update(chunk)
            size += len(chunk)
    assert size == BIG_BYTES
    assert received.hexdigest() == sent.hexdigest()
