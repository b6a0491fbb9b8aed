"""Blob storage: the ``BlobStore`` protocol, its errors, and ``open_store`` from settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from loreg.errors import InvalidInput
from loreg.storage.base import (
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    DigestMismatch,
    InvalidRange,
    LeftoverUpload,
    Readable,
    StorageUnavailable,
    blob_key,
)

if TYPE_CHECKING:
    from loreg.config import Settings

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "DigestMismatch",
    "InvalidRange",
    "LeftoverUpload",
    "Readable",
    "StorageUnavailable",
    "blob_key",
    "open_store",
    "open_store_url",
]


def open_store(settings: Settings) -> BlobStore:
    """The store ``settings.effective_storage_url`` names (``file://`` or ``s3://``)."""
    return open_store_url(
        settings.effective_storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_public_endpoint_url=settings.s3_public_endpoint_url,
    )


def open_store_url(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_public_endpoint_url: str | None = None,
) -> BlobStore:
    """Parse ``file:///path`` or ``s3://bucket[/prefix]`` into a store.

    ``s3_public_endpoint_url``: sign presigned URLs for this endpoint instead of
    ``s3_endpoint_url`` (see ``S3BlobStore``).
    Raises ``InvalidInput`` for any other URL (a configuration error, reported at start).
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise InvalidInput("storage URL must be file:///absolute/path", details={"url": url})
        from loreg.storage.local import LocalBlobStore

        return LocalBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidInput("storage URL must be s3://bucket[/prefix]", details={"url": url})
        bucket, prefix = parts.netloc, unquote(parts.path).strip("/")
        from loreg.storage.s3 import S3BlobStore

        return S3BlobStore(
            bucket,
            prefix,
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            public_endpoint_url=s3_public_endpoint_url,
        )
    raise InvalidInput("storage URL must start with file:// or s3://", details={"url": url})
