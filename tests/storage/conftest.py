"""Fixtures for the storage tests: each store with a way to look behind its back."""

from __future__ import annotations

import os
import time
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
    #: Leave what a put interrupted by a crash leaves (a temp file no process holds, a
    #: multipart upload never completed), started ``age`` seconds ago where the backing
    #: storage lets the test choose.
    interrupt_upload: Callable[[float], None]


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

    def interrupt_upload(age: float) -> None:
        tmp = root / "tmp" / "put-crashed.tmp"
        tmp.write_bytes(b"half a blob")
        then = time.time() - age
        os.utime(tmp, (then, then))

    return Harness("local", store, leftovers, corrupt, interrupt_upload)


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

    def interrupt_upload(age: float) -> None:  # S3 sets the start time itself: now
        key = blob_key("sha256:" + "ab" * 32, prefix)
        upload = raw.create_multipart_upload(Bucket=endpoint.bucket, Key=key)
        raw.upload_part(Bucket=endpoint.bucket, Key=key, UploadId=upload["UploadId"],
                        PartNumber=1, Body=b"half a blob")

    return Harness("s3", store, leftovers, corrupt, interrupt_upload)


@pytest.fixture(params=["local", "s3"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        yield local_harness(tmp_path / "blobs")
    else:
        yield s3_harness(request.getfixturevalue("s3_bucket"))


@pytest.fixture
def store(harness: Harness) -> BlobStore:
    return harness.store
