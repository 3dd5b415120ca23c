"""Choose the blob store from settings: the data dir, or an S3-compatible bucket."""

from __future__ import annotations

from typing import Any

from prepshelf.settings import Settings
from prepshelf.store.blobs import BlobStore, LocalBlobStore


def build_s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint (blob storage and S3 source syncs)."""
    import boto3  # only deployments that use S3 pay for the import
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(
            s3={"addressing_style": settings.s3_addressing_style},
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=20,
        ),
    )


def build_blob_store(settings: Settings) -> BlobStore:
    if not settings.blob_url:
        return LocalBlobStore(settings.blob_dir)
    if not settings.blob_url.startswith("s3://"):
        raise ValueError(f"PREPSHELF_BLOB_URL must be s3://bucket/prefix: {settings.blob_url!r}")
    from prepshelf.store.blobs_s3 import S3BlobStore, parse_s3_url

    bucket, prefix = parse_s3_url(settings.blob_url)
    return S3BlobStore(
        build_s3_client(settings),
        bucket=bucket,
        prefix=prefix,
        part_bytes=settings.s3_part_size_mb * 1024 * 1024,
        tmp_dir=settings.data_dir / "tmp",
    )
