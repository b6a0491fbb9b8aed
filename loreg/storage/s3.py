"""Blobs in an S3-compatible bucket (AWS, MinIO, moto) under ``<prefix>/sha256/ab/<hex>``.

A put holds at most ``upload_concurrency`` parts in memory. A body that fits in one part is
hashed first and sent with a single ``PutObject`` only when its digest matched; a larger body
goes through a multipart upload (the next part is read while the previous ones are sent) that
is completed only when the digest matched and aborted on any error, so a bad or interrupted
upload never becomes visible and leaves no pending upload behind.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from loreg.storage.base import (
    CHUNK_SIZE,
    BlobNotFound,
    BlobStoreBase,
    BlobTooLarge,
    DigestVerifier,
    InvalidRange,
    LeftoverUpload,
    RangeReader,
    Readable,
    StorageUnavailable,
    blob_key,
    check_range,
    digest_from_key,
    drain_and_verify,
)
from loreg.units import MiB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: S3 refuses parts smaller than this (except the last).
MIN_PART_SIZE = 5 * MiB
DEFAULT_PART_SIZE = 8 * MiB
#: Part buffers of one put: while one is read from the source, the others are being sent.
DEFAULT_UPLOAD_CONCURRENCY = 2
MAX_PARTS = 10_000
#: Parts double in size every this many, so 10 000 parts reach ~480 GiB at 8 MiB.
PARTS_PER_SIZE_STEP = 2_000

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3BlobStore(BlobStoreBase):
    """Content-addressed blobs in ``bucket`` under ``prefix``.

    ``client`` overrides the boto3 client (its endpoint and credentials are then used as
    they are). With ``endpoint_url`` the client uses path-style addressing, which MinIO and
    moto need. ``part_size`` and ``upload_concurrency`` bound memory: a put holds at most
    ``upload_concurrency`` parts.

    ``public_endpoint_url``: sign presigned URLs for this endpoint instead. In docker compose
    the API reaches MinIO as ``http://minio:9000`` while a client on the host only knows
    ``http://localhost:9000``; a URL signed for the first is useless to the second, and
    rewriting its host breaks the signature. So presigned URLs are signed by a second client
    configured with the public endpoint (``LOREG_S3_PUBLIC_ENDPOINT_URL``); every other
    request goes to the internal one. Signing is local: the public endpoint need not be
    reachable from the server.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: S3Client | None = None,
        public_endpoint_url: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if upload_concurrency < 1:
            raise ValueError("upload_concurrency must be at least 1")
        self.upload_concurrency = upload_concurrency
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.client: S3Client = client if client is not None else _make_client(endpoint_url, region)
        #: Signs presigned URLs; the same client unless ``public_endpoint_url`` is given.
        self.signer: S3Client = (
            _make_client(public_endpoint_url, region) if public_endpoint_url else self.client
        )

    def __repr__(self) -> str:
        public = (
            f", public={self.signer.meta.endpoint_url!r}" if self.signer is not self.client else ""
        )
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}{public})"

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
        parts = _PartFiller(source, DigestVerifier(digest, max_size))
        first = parts.fill(bytearray(self.part_size_for(1)))
        if parts.eof:
            parts.verifier.verify()
            with _translate(digest):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=_body(first))
            return parts.verifier.size
        return self._put_multipart(key, digest, parts, first)

    def _put_multipart(self, key: str, digest: str, parts: _PartFiller, first: bytearray) -> int:
        """Upload parts on a small pool while the next one is read; complete if verified.

        At most ``upload_concurrency`` part buffers exist: while one is filled from the source,
        the others are being sent, and a sent buffer is reused. Any failure (a part, the source,
        the digest) cancels what is queued, waits for the parts in flight, then aborts.
        """
        with _translate(digest):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        pool = ThreadPoolExecutor(self.upload_concurrency, thread_name_prefix="s3-part")
        in_flight: dict[Future[str], tuple[int, bytearray]] = {}
        etags: dict[int, str] = {}
        spare: list[bytearray] = []

        def collect(block: bool) -> None:
            """Record finished parts (raising the first failure) and keep their buffers."""
            if not in_flight:
                return
            done, _ = wait(
                in_flight,
                return_when=FIRST_COMPLETED if block else ALL_COMPLETED,
                timeout=None if block else 0,
            )
            for fut in done:
                number, buffer = in_flight.pop(fut)
                etags[number] = fut.result()
                spare.append(buffer)

        try:
            body, number = first, 1
            del first  # the loop owns the buffer from here
            while True:
                fut = pool.submit(self._upload_part, key, digest, upload_id, number, body)
                in_flight[fut] = (number, body)
                if parts.eof:
                    break
                collect(block=False)
                while len(in_flight) >= self.upload_concurrency:
                    collect(block=True)
                number += 1
                size = self.part_size_for(number)
                buffer = spare.pop() if spare else bytearray(size)
                spare.clear()
                if len(buffer) != size:  # parts grew (or the last one was cut): a new one
                    buffer = bytearray(size)
                body = parts.fill(buffer)
                del buffer
                if not body:
                    break
                if number > MAX_PARTS:
                    raise BlobTooLarge(
                        "blob exceeds S3's limit of 10 000 parts", details={"digest": digest}
                    )
            while in_flight:
                collect(block=True)
            parts.verifier.verify()
            with _translate(digest):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                    },
                )
        except BaseException:
            # No part may land after the abort: cancel the queued ones, wait for the rest.
            pool.shutdown(wait=True, cancel_futures=True)
            self.abort_upload(key, upload_id)
            raise
        finally:
            pool.shutdown(wait=True)
        return parts.verifier.size

    def _upload_part(
        self, key: str, digest: str, upload_id: str, number: int, body: bytearray
    ) -> str:
        with _translate(digest):
            return self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=_body(body)
            )["ETag"]

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload (ours on failure; stale ones found by garbage collection)."""
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
            return self.signer.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_in,
            )

    def check(self) -> None:
        with _translate(None):
            self.client.head_bucket(Bucket=self.bucket)

    def leftover_uploads(self, *, older_than: datetime | None = None) -> list[LeftoverUpload]:
        if older_than is None:  # S3 cannot tell a live upload from an abandoned one
            return []
        found = []
        for upload in self.pending_uploads():
            initiated = upload.get("Initiated")
            if not isinstance(initiated, datetime):
                continue
            if initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=UTC)
            if initiated < older_than:
                found.append(
                    LeftoverUpload(
                        "multipart",
                        str(upload["Key"]),
                        initiated,
                        upload_id=str(upload["UploadId"]),
                    )
                )
        return found

    def discard_upload(self, upload: LeftoverUpload, *, older_than: datetime | None = None) -> bool:
        if upload.kind != "multipart" or upload.upload_id is None:
            return False
        if older_than is not None and upload.started >= older_than:
            return False
        self.abort_upload(upload.name, upload.upload_id)
        return True

    def pending_uploads(self) -> list[dict[str, Any]]:
        """Multipart uploads in progress under the prefix (tests, operators)."""
        with _translate(None):
            response = self.client.list_multipart_uploads(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
            )
        return [dict(upload) for upload in response.get("Uploads", [])]


class _PartFiller:
    """Reads the source straight into part buffers, hashing as it goes.

    A part is one contiguous ``bytearray`` that botocore signs, checksums and sends in single
    calls (a file-like body would be walked in small blocks, each pass in Python); the
    source's ``readinto`` fills it without an intermediate copy where the source has one.
    """

    def __init__(self, source: Readable, verifier: DigestVerifier) -> None:
        self.source = source
        self.verifier = verifier
        self.eof = False
        self._readinto: Callable[[memoryview], int | None] | None = getattr(
            source, "readinto", None
        )

    def fill(self, buffer: bytearray) -> bytearray:
        """Fill ``buffer`` (truncated at end of file); sets ``eof`` when the source ended."""
        view = memoryview(buffer)
        filled = 0
        try:
            while filled < len(buffer):
                n = self._read_into(view[filled:])
                if not n:
                    self.eof = True
                    break
                self.verifier.update(view[filled : filled + n])  # type: ignore[arg-type]
                filled += n
        finally:
            view.release()
        if filled < len(buffer):
            del buffer[filled:]
        return buffer

    def _read_into(self, target: memoryview) -> int:
        if self._readinto is not None:
            try:
                return self._readinto(target) or 0
            except NotImplementedError:  # io.RawIOBase that only overrides read()
                self._readinto = None
        chunk = self.source.read(min(len(target), CHUNK_SIZE))
        target[: len(chunk)] = chunk
        return len(chunk)


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


def _make_client(endpoint_url: str | None, region: str | None) -> S3Client:
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
        # put() verifies the sha256 of every byte itself (and over plain HTTP botocore
        # signs each part's sha256 too); a CRC32 of every part on top is only CPU.
        request_checksum_calculation="when_required",
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _body(buffer: bytearray) -> bytes:
    """botocore takes a ``bytearray`` body as it is (its stubs only name ``bytes``)."""
    return cast(bytes, buffer)


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


__all__ = ["DEFAULT_PART_SIZE", "MIN_PART_SIZE", "S3BlobStore"]
