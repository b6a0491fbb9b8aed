"""Blobs in an S3-compatible bucket (AWS, MinIO, moto) under ``<prefix>/sha256/ab/<hex>``.

A put buffers at most one part in memory. A body that fits in one part is hashed first and
sent with a single ``PutObject`` only when its digest matched; a larger body goes through a
multipart upload that is completed only when the digest matched and aborted on any error, so
a bad or interrupted upload never becomes visible and leaves no pending upload behind.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from registry.storage.base import (
    BlobNotFound,
    BlobStoreBase,
    BlobTooLarge,
    DigestVerifier,
    InvalidRange,
    RangeReader,
    Readable,
    StorageUnavailable,
    blob_key,
    check_range,
    digest_from_key,
    drain_and_verify,
    iter_chunks,
    validate_digest,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MiB = 1024 * 1024
#: S3 refuses parts smaller than this (except the last).
MIN_PART_SIZE = 5 * MiB
DEFAULT_PART_SIZE = 8 * MiB
MAX_PARTS = 10_000
#: Parts double in size every this many, so 10 000 parts reach ~480 GiB at 8 MiB.
PARTS_PER_SIZE_STEP = 2_000

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3BlobStore(BlobStoreBase):
    """Content-addressed blobs in ``bucket`` under ``prefix``.

    ``client`` overrides the boto3 client (its endpoint and credentials are then used as
    they are). With ``endpoint_url`` the client uses path-style addressing, which MinIO and
    moto need. ``part_size`` bounds memory: a put holds about one part.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: S3Client | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        if client is None:
            config = Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=32,
            )
            client = boto3.client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        self.client: S3Client = client

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def key_for(self, digest: str) -> str:
        return blob_key(digest, self.prefix)

    def part_size_for(self, part_number: int) -> int:
        """Size of part ``part_number`` (1-based): grows for huge blobs to stay under 10 000."""
        return self.part_size * 2 ** ((part_number - 1) // PARTS_PER_SIZE_STEP)

    # --- writing ---------------------------------------------------------------------------

    def put(self, digest: str, source: Readable, *, max_size: int | None = None) -> int:
        key = self.key_for(digest)
        if self.exists(digest):
            return drain_and_verify(digest, source, max_size)
        verifier = DigestVerifier(digest, max_size)
        chunks = iter_chunks(source)
        first, eof = self._fill(chunks, verifier, self.part_size_for(1))
        if eof:
            verifier.verify()
            with _translate(digest):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=first)
            return verifier.size
        pending = [first]
        del first  # the multipart loop owns the only reference, so memory stays ~one part
        return self._put_multipart(key, digest, chunks, verifier, pending)

    def _put_multipart(
        self,
        key: str,
        digest: str,
        chunks: Iterator[bytes],
        verifier: DigestVerifier,
        pending: list[_PartBody],
    ) -> int:
        with _translate(digest):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)[
                "UploadId"
            ]
        try:
            parts: list[CompletedPartTypeDef] = []
            body: _PartBody | None = pending.pop()
            part_number, eof = 1, False
            while body:
                with _translate(digest):
                    etag = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=part_number,
                        Body=body,
                    )["ETag"]
                parts.append({"PartNumber": part_number, "ETag": etag})
                if eof:
                    break
                body = None  # let the sent part go before reading the next one
                part_number += 1
                body, eof = self._fill(chunks, verifier, self.part_size_for(part_number))
                if body and part_number > MAX_PARTS:
                    raise BlobTooLarge(
                        "blob exceeds S3's limit of 10 000 parts", details={"digest": digest}
                    )
            verifier.verify()
            with _translate(digest):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            self._abort(key, upload_id)
            raise
        return verifier.size

    def _fill(
        self, chunks: Iterator[bytes], verifier: DigestVerifier, size: int
    ) -> tuple[_PartBody, bool]:
        """Read up to about ``size`` bytes (hashing them); return them and whether EOF was hit.

        The chunks are kept as they arrived, never joined, so a part costs its own size once.
        ``iter_chunks`` reads CHUNK_SIZE at a time, so a part may overshoot ``size`` by less
        than one chunk; S3 only needs every part but the last to be >= 5 MiB.
        """
        body = _PartBody()
        while len(body) < size:
            chunk = next(chunks, None)
            if chunk is None:
                return body, True
            verifier.update(chunk)
            body.append(chunk)
        return body, False

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    # --- reading ---------------------------------------------------------------------------

    def open(self, digest: str, start: int = 0, end: int | None = None) -> BinaryIO:
        key = self.key_for(digest)
        check_range(start, end)
        if end is not None and end == start:
            if start > self.size(digest):
                raise InvalidRange(
                    "range starts past the end of the blob",
                    details={"digest": digest, "start": start},
                )
            return io.BytesIO(b"")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with _translate(digest):
                response = self.client.get_object(**kwargs)
        except StorageUnavailable as exc:
            if not _is_invalid_range(exc.__cause__):
                raise
            # Only a start at or past the end is unsatisfiable for S3.
            size = self.size(digest)
            if start > size:
                raise InvalidRange(
                    "range starts past the end of the blob",
                    details={"digest": digest, "start": start, "size": size},
                ) from None
            return io.BytesIO(b"")
        return io.BufferedReader(_S3BodyReader(response["Body"], digest))

    def exists(self, digest: str) -> bool:
        try:
            self.size(digest)
        except BlobNotFound:
            return False
        return True

    def size(self, digest: str) -> int:
        key = self.key_for(digest)
        with _translate(digest):
            return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]

    def delete(self, digest: str) -> None:
        key = self.key_for(digest)
        with _translate(digest):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def iterate(self) -> Iterator[tuple[str, int, datetime]]:
        list_prefix = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        paginator = self.client.get_paginator("list_objects_v2")
        with _translate(None):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix):
                for obj in page.get("Contents", []):
                    digest = digest_from_key(obj["Key"], self.prefix)
                    if digest is None:
                        continue
                    modified = obj["LastModified"]
                    if modified.tzinfo is None:
                        modified = modified.replace(tzinfo=UTC)
                    yield digest, obj["Size"], modified

    def presigned_url(self, digest: str, *, expires_in: int) -> str | None:
        key = self.key_for(digest)
        with _translate(digest):
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_in,
            )

    def check(self) -> None:
        with _translate(None):
            self.client.head_bucket(Bucket=self.bucket)

    def pending_uploads(self) -> list[dict[str, Any]]:
        """Multipart uploads in progress under the prefix (tests, operators)."""
        with _translate(None):
            response = self.client.list_multipart_uploads(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
            )
        return list(response.get("Uploads", []))


class _PartBody(io.RawIOBase):
    """A seekable stream over a part's chunks, so boto3 streams and retries it uncopied."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._size = 0
        self._pos = 0
        self._index = 0  # chunk holding ``_pos``
        self._offset = 0  # ``_pos`` within that chunk

    def append(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(base + offset, self._size))
        self._index, self._offset, rest = 0, 0, self._pos
        while self._index < len(self._chunks) and rest >= len(self._chunks[self._index]):
            rest -= len(self._chunks[self._index])
            self._index += 1
        self._offset = rest
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._index < len(self._chunks):
            chunk = self._chunks[self._index]
            n = min(len(view) - written, len(chunk) - self._offset)
            view[written : written + n] = memoryview(chunk)[self._offset : self._offset + n]
            written += n
            self._offset += n
            if self._offset == len(chunk):
                self._index += 1
                self._offset = 0
        self._pos += written
        return written


class _S3BodyReader(RangeReader):
    """A GET body as a raw stream; network errors mid-read become ``StorageUnavailable``."""

    def __init__(self, body: Any, digest: str) -> None:
        super().__init__(body, None)
        self._digest = digest

    def _read(self, n: int) -> bytes:
        with _translate(self._digest):
            try:
                return super()._read(n)
            except OSError as exc:  # urllib3 protocol errors surface as OSError subclasses
                raise StorageUnavailable(f"blob store read failed: {exc}") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_invalid_range(exc: BaseException | None) -> bool:
    return isinstance(exc, ClientError) and (
        _error_code(exc) == "InvalidRange"
        or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416
    )


@contextlib.contextmanager
def _translate(digest: str | None) -> Iterator[None]:
    """botocore errors -> ``BlobNotFound`` (missing key) or ``StorageUnavailable``."""
    try:
        yield
    except ClientError as exc:
        code = _error_code(exc)
        if digest is not None and code in _NOT_FOUND_CODES:
            raise BlobNotFound("blob not found", details={"digest": digest}) from None
        raise StorageUnavailable(
            f"blob store error: {code or 'unknown'}", details={"code": code}
        ) from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"blob store unreachable: {exc}") from exc


__all__ = ["DEFAULT_PART_SIZE", "MIN_PART_SIZE", "S3BlobStore", "validate_digest"]
