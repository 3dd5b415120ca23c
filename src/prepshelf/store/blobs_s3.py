"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, …), streamed both ways.

Uploads are multipart: the writer buffers one part (PREPSHELF_S3_PART_SIZE_MB) and hands it to
a background thread, so memory holds at most two parts whatever the file size, and the
caller's event loop blocks only while the previous part is still in flight. A blob becomes
visible only when the multipart upload completes, so a reader never sees half a blob.
Downloads stream the object body; `local_copy` downloads (ranged, via s3transfer) to a
temporary file under the data dir for the sandboxed parser, and removes it afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from prepshelf.store.blobs import BlobInfo, BlobWriter

log = logging.getLogger(__name__)

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's floor for every part but the last


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"expected s3://bucket[/prefix], got {url!r}")
    return parsed.netloc, parsed.path.strip("/")


class _S3Writer:
    def __init__(self, store: S3BlobStore, key: str) -> None:
        self._store, self._key = store, key
        self._buf = bytearray()
        self._hash = hashlib.sha256()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: Future[dict[str, Any]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._buf += data
        self.bytes_written += len(data)
        if len(self._buf) >= self._store.part_bytes:
            self._ship(bytes(self._buf))
            self._buf = bytearray()

    def _ship(self, body: bytes) -> None:
        s3, bucket, key = self._store.client, self._store.bucket, self._store.object_key(self._key)
        if self._upload_id is None:
            self._upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-part")
        self._collect()  # one part in flight at a time: bounds memory at two parts
        number = len(self._parts) + 1
        upload_id = self._upload_id
        assert self._pool is not None

        def upload() -> dict[str, Any]:
            resp = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": resp["ETag"]}

        self._pending = self._pool.submit(upload)

    def _collect(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._parts.append(pending.result())

    def commit(self) -> str:
        s3, bucket, key = self._store.client, self._store.bucket, self._store.object_key(self._key)
        try:
            if self._upload_id is None:
                s3.put_object(Bucket=bucket, Key=key, Body=bytes(self._buf))
            else:
                if self._buf:
                    self._ship(bytes(self._buf))
                self._collect()
                s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except BaseException:
            self.abort()
            raise
        self._buf = bytearray()
        self._close_pool()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._buf = bytearray()
        if self._pending is not None:
            with suppress(Exception):  # the part is abandoned with its upload
                self._pending.result()
            self._pending = None
        self._close_pool()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket,
                    Key=self._store.object_key(self._key),
                    UploadId=upload_id,
                )
            except Exception:  # the orphan sweep aborts stale uploads later
                log.warning("could not abort multipart upload of %s", self._key, exc_info=True)

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class S3BlobStore:
    """Keys map to `<prefix>/<key>` objects in one bucket."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str = "",
        part_bytes: int = 8 * 1024 * 1024,
        tmp_dir: Path,
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.part_bytes = part_bytes
        self.tmp_dir = tmp_dir

    def object_key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _blob_key(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1 :] if self.prefix else object_key

    def open_writer(self, key: str) -> BlobWriter:
        return _S3Writer(self, key)

    @contextmanager
    def open_reader(self, key: str) -> Iterator[BinaryIO]:
        body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        try:
            yield body  # botocore's StreamingBody: read(n) pulls from the socket
        finally:
            body.close()

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.tmp_dir, prefix="blob-", suffix=".tmp") as fh:
            # s3transfer downloads large objects as concurrent ranged GETs.
            self.client.download_fileobj(self.bucket, self.object_key(key), fh)
            fh.flush()
            yield Path(fh.name)

    def path(self, key: str) -> Path:
        raise NotImplementedError("S3 blobs have no local path; use local_copy() or open_reader()")

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        full = self.object_key(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield BlobInfo(self._blob_key(obj["Key"]), obj["LastModified"])
        uploads = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=full
        )
        for page in uploads:
            for up in page.get("Uploads", []):
                key = f"{self._blob_key(up['Key'])}?uploadId={up['UploadId']}"
                yield BlobInfo(key, up["Initiated"], partial=True)

    def discard_partial(self, info: BlobInfo) -> None:
        key, _, upload_id = info.key.partition("?uploadId=")
        self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=self.object_key(key), UploadId=upload_id
        )
