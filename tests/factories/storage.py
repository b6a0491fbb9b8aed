"""Blob-store test helpers: each store with a way to look behind its back (``Harness``),
deterministic blobs, and a source that reads short and can fail mid-stream."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loreg.digests import sha256_digest
from loreg.storage.base import BlobStore, blob_key
from loreg.storage.local import LocalBlobStore
from loreg.storage.s3 import MIN_PART_SIZE, S3BlobStore
from tests.fixtures.s3 import S3Endpoint

MB = 1000 * 1000


def blob(size: int, seed: int = 0) -> tuple[str, bytes]:
    """Deterministic, incompressible-enough bytes of ``size`` and their digest."""
    block = hashlib.sha256(f"seed-{seed}".encode()).digest() * 32  # 1 KiB
    data = (block * (size // len(block) + 1))[:size]
    if size:
        data = bytes([seed % 256]) + data[1:]
    return sha256_digest(data), data


class ChunkedSource(io.RawIOBase):
    """A readable that returns short reads and can fail after ``fail_after`` bytes."""

    def __init__(self, data: bytes, *, read_size: int = 65536, fail_after: int | None = None):
        super().__init__()
        self._data = memoryview(data)
        self._pos = 0
        self._read_size = read_size
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._fail_after is not None and self._pos >= self._fail_after:
            raise ConnectionResetError("client went away")
        n = self._read_size if size is None or size < 0 else min(size, self._read_size)
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


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
        raw.upload_part(
            Bucket=endpoint.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"half a blob",
        )

    return Harness("s3", store, leftovers, corrupt, interrupt_upload)
