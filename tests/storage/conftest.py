"""Fixtures for the storage tests: each store with a way to look behind its back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loreg.storage.base import BlobStore, blob_key
from loreg.storage.local import LocalBlobStore
from loreg.storage.s3 import MIN_PART_SIZE, S3BlobStore
from tests.fixtures.s3 import S3Endpoint

#: The smallest part S3 allows, so a 20 MB blob takes several parts.
SMALL_PART = MIN_PART_SIZE


@dataclass
class Harness:
    """A store plus raw access to its backing storage, independent of the store's code."""

    kind: str
    store: BlobStore
    #: Every stored object / file, including temp files and pending multipart uploads.
    leftovers: Callable[[], list[str]]
    #: Overwrite a blob's stored bytes (simulates corruption at rest).
    corrupt: Callable[[str, bytes], None]


def local_harness(root: Path) -> Harness:
    store = LocalBlobStore(root)

    def leftovers() -> list[str]:
        return sorted(
            str(Path(dirpath, name).relative_to(root))
            for dirpath, _dirs, files in os.walk(root)
            for name in files
        )

    def corrupt(digest: str, data: bytes) -> None:
        (root / blob_key(digest)).write_bytes(data)

    return Harness("local", store, leftovers, corrupt)


def s3_harness(endpoint: S3Endpoint, prefix: str = "blobs") -> Harness:
    store = S3BlobStore(
        endpoint.bucket,
        prefix,
        endpoint_url=endpoint.endpoint_url,
        region="us-east-1",
        part_size=SMALL_PART,
    )
    raw = endpoint.client()

    def leftovers() -> list[str]:
        objects = raw.list_objects_v2(Bucket=endpoint.bucket).get("Contents", [])
        uploads = raw.list_multipart_uploads(Bucket=endpoint.bucket).get("Uploads", [])
        return sorted([o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads])

    def corrupt(digest: str, data: bytes) -> None:
        raw.put_object(Bucket=endpoint.bucket, Key=blob_key(digest, prefix), Body=data)

    return Harness("s3", store, leftovers, corrupt)


@pytest.fixture(params=["local", "s3"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        yield local_harness(tmp_path / "blobs")
    else:
        yield s3_harness(request.getfixturevalue("s3_bucket"))


@pytest.fixture
def store(harness: Harness) -> BlobStore:
    return harness.store
