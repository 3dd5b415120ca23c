"""/v1/files through the official SDK and raw HTTP: upload, list, retrieve, content, delete."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from support.service import Service


def test_upload_retrieve_content_delete(service: Service) -> None:
    client = service.openai()
    payload = b"hello prepshelf\n" * 1000
    created = client.files.create(file=("notes.txt", io.BytesIO(payload)), purpose="assistants")
    assert created.id.startswith("file-")
    assert created.bytes == len(payload)
    assert created.filename == "notes.txt"
    assert created.purpose == "assistants"

    fetched = client.files.retrieve(created.id)
    assert fetched.id == created.id and fetched.bytes == len(payload)
    assert client.files.content(created.id).read() == payload

    with service.db() as db:
        row = db.execute("SELECT sha256 FROM files WHERE id = %s", [created.id]).fetchone()
    assert row is not None and row["sha256"] == hashlib.sha256(payload).hexdigest()

    deleted = client.files.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_list_paginates_with_cursors(service: Service) -> None:
    client = service.openai()
    ids = [
        client.files.create(file=(f"p{i}.txt", io.BytesIO(b"x")), purpose="user_data").id
        for i in range(5)
    ]
    page = client.files.list(purpose="user_data", limit=2, order="asc")
    assert [f.id for f in page.data] == ids[:2]
    assert page.has_more
    everything = [f.id for f in client.files.list(purpose="user_data", limit=2, order="asc")]
    assert everything == ids  # the SDK follows `after` cursors across pages
    newest_first = [f.id for f in client.files.list(purpose="user_data", order="desc")]
    assert newest_first == list(reversed(ids))


def test_bad_cursor_is_400_naming_after(service: Service) -> None:
    with service.http() as http:
        response = http.get("/v1/files", params={"after": "file-doesnotexist"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "after"


def test_upload_over_limit_is_413(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    svc = Service(
        database_url,
        tmp_path_factory.mktemp("small"),
        workers=0,
        extra_env={"PREPSHELF_MAX_UPLOAD_BYTES": "1000"},
    )
    svc.api = svc._spawn("api")
    try:
        svc.wait_ready(min_workers=0)
        with pytest.raises(openai.APIStatusError) as info:
            svc.openai().files.create(
                file=("big.bin", io.BytesIO(b"x" * 5000)), purpose="assistants"
            )
        assert info.value.status_code == 413
        assert "limit" in info.value.message
        # Nothing half-written stays behind.
        assert not list((svc.data_dir / "blobs").rglob("file-*"))
    finally:
        svc.stop()


def test_bad_purpose_and_missing_file_are_400(service: Service) -> None:
    with service.http() as http:
        bad_purpose = http.post(
            "/v1/files", files={"file": ("a.txt", b"x")}, data={"purpose": "nonsense"}
        )
        no_file = http.post("/v1/files", data={"purpose": "assistants"})
        not_multipart = http.post("/v1/files", json={"purpose": "assistants"})
    assert bad_purpose.status_code == 400 and bad_purpose.json()["error"]["param"] == "purpose"
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    assert not_multipart.status_code == 400


def test_auth_required(service: Service) -> None:
    import httpx

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        response = httpx.get(f"{service.base_url}/files", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"


def test_unknown_file_is_404(service: Service) -> None:
    with pytest.raises(openai.NotFoundError):
        service.openai().files.retrieve("file-nope")


def test_uploads_in_flight_leave_the_pool_to_status_reads(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """More unfinished uploads than pooled connections: a read is still answered at once."""
    svc = Service(
        database_url,
        tmp_path_factory.mktemp("pool"),
        workers=0,
        extra_env={"PREPSHELF_DB_POOL_SIZE": "2"},
    )
    svc.api = svc._spawn("api")
    try:
        svc.wait_ready(min_workers=0)
        asyncio.run(_read_while_uploading(svc, uploads=3))
    finally:
        svc.stop()


async def _read_while_uploading(svc: Service, *, uploads: int) -> None:
    gate = asyncio.Event()  # the uploads' last bytes wait for it

    async def body() -> AsyncIterator[bytes]:
        yield b'--b\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        yield b'--b\r\ncontent-disposition: form-data; name="file"; filename="s.txt"\r\n\r\n'
        yield b"half of it"
        await gate.wait()
        yield b" and the rest\r\n--b--\r\n"

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{svc.port}",
        headers={"Authorization": f"Bearer {svc.api_key}"},
        timeout=60,
    ) as client:
        created = await client.post(
            "/v1/files", files={"file": ("a.txt", b"x")}, data={"purpose": "assistants"}
        )
        file_id = created.raise_for_status().json()["id"]
        headers = {"content-type": "multipart/form-data; boundary=b"}
        pending = [
            asyncio.create_task(client.post("/v1/files", content=body(), headers=headers))
            for _ in range(uploads)
        ]
        await asyncio.sleep(0.5)  # let every upload reach the server and start streaming
        # Held connections would make this wait for the pool's 30 s timeout.
        read = await client.get(f"/v1/files/{file_id}", timeout=10)
        assert read.status_code == 200
        assert not any(task.done() for task in pending)
        gate.set()
        for response in await asyncio.gather(*pending):
            assert response.status_code == 200
            assert response.json()["bytes"] == len(b"half of it and the rest")


def test_upload_of_many_blocks_keeps_every_byte(service: Service) -> None:
    """Bigger than the upload's 1 MiB write blocks and not a multiple of them."""
    payload = os.urandom(3 * 1024 * 1024 + 12345)
    created = service.openai().files.create(
        file=("blocks.bin", io.BytesIO(payload)), purpose="assistants"
    )
    assert created.bytes == len(payload)
    assert service.openai().files.content(created.id).read() == payload
    with service.db() as db:
        row = db.execute("SELECT sha256 FROM files WHERE id = %s", [created.id]).fetchone()
    assert row is not None and row["sha256"] == hashlib.sha256(payload).hexdigest()
