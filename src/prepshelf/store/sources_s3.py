"""An S3-compatible prefix as a sync source: listed page by page, objects streamed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from prepshelf.store.sources import SourceEntry, SourceError, hidden


def _error(exc: Exception, doing: str) -> SourceError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return SourceError(f"{doing}: {code or exc}", retryable=status >= 500 or status == 429)
    return SourceError(f"{doing}: {type(exc).__name__}: {exc}", retryable=True)


class S3Source:
    def __init__(self, client: Any, *, uri: str, bucket: str, prefix: str) -> None:
        self.uri = uri
        self._s3, self._bucket = client, bucket
        self._prefix = f"{prefix}/" if prefix else ""

    def entries(self) -> Iterator[SourceEntry]:
        from botocore.exceptions import BotoCoreError, ClientError

        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(self._prefix) :]
                    if not rel or rel.endswith("/") or hidden(rel):
                        continue  # folder markers and hidden names
                    etag = str(obj.get("ETag", "")).strip('"')
                    yield SourceEntry(rel, int(obj["Size"]), f"{obj['Size']}:{etag}")
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"cannot list {self.uri}") from exc

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=self._prefix + path)["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"cannot read {path}") from exc
        try:
            yield cast(BinaryIO, body)
        finally:
            body.close()
