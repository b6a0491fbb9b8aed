"""The ``BlobStore`` protocol, its errors, and helpers both implementations share.

Blobs are content-addressed: a digest is ``sha256:<64 lower-case hex>`` (``loreg.digests``)
and its key is ``<prefix>/sha256/<first two hex>/<hex>``. A digest is validated before any
I/O, so nothing a client sends can turn into a path (``../x``) or a foreign key.

Both implementations raise the same errors for the same situations:

- ``loreg.errors.InvalidDigest`` (400): not ``sha256:<64 lower-case hex>``.
- ``DigestMismatch`` (400): the bytes that arrived do not hash to the digest.
- ``BlobTooLarge`` (413): more than ``max_size`` bytes arrived.
- ``InvalidRange`` (400): a read range that is negative, reversed or starts past the end.
- ``BlobNotFound`` (404): no blob with that digest.
- ``StorageUnavailable`` (503): the store cannot be reached or refused the operation.

Exceptions raised by the *source* of a ``put`` (a client disconnecting mid-upload) are
re-raised unchanged, after the partial upload has been cleaned up.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from loreg.digests import digest_hex, is_valid_digest, validate_digest
from loreg.errors import InvalidInput, NotFound, TooLarge, Unavailable

#: How much ``put``/``download`` ask of a stream at a time.
CHUNK_SIZE = 1024 * 1024


class Readable(Protocol):
    """What ``put`` reads from: any ``BinaryIO``, or anything with ``read(n) -> bytes``."""

    def read(self, size: int = ..., /) -> bytes: ...


class BlobNotFound(NotFound):
    """No blob with that digest in the store."""

    code = "blob_not_found"


class DigestMismatch(InvalidInput):
    """The uploaded (or downloaded) bytes do not hash to the announced digest."""

    code = "digest_mismatch"


class InvalidRange(InvalidInput):
    """A byte range that cannot be served (negative, reversed, or starting past the end)."""

    code = "invalid_range"


class BlobTooLarge(TooLarge):
    """More bytes arrived than the caller's ``max_size`` allows."""

    code = "blob_too_large"


class StorageUnavailable(Unavailable):
    """The blob store cannot be reached, or refused an operation it should allow."""

    code = "storage_unavailable"


def blob_key(digest: str, prefix: str = "") -> str:
    """The content-addressed key ``<prefix>/sha256/ab/<hex>`` (no leading slash)."""
    hex_ = digest_hex(digest)
    rel = f"sha256/{hex_[:2]}/{hex_}"
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def digest_from_key(key: str, prefix: str = "") -> str | None:
    """Inverse of ``blob_key``; ``None`` for keys that are not blobs (temp files, strays)."""
    prefix = prefix.strip("/")
    if prefix:
        if not key.startswith(prefix + "/"):
            return None
        key = key[len(prefix) + 1 :]
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "sha256":
        return None
    digest = "sha256:" + parts[2]
    if not is_valid_digest(digest) or parts[1] != parts[2][:2]:
        return None
    return digest


def check_range(start: int, end: int | None) -> None:
    """Refuse ranges that no blob could satisfy, before any I/O."""
    if start < 0 or (end is not None and end < start):
        raise InvalidRange(
            "byte range must satisfy 0 <= start <= end", details={"start": start, "end": end}
        )


class RangeReader(io.RawIOBase):
    """A raw stream reading at most ``limit`` bytes (all when ``None``) from ``inner``.

    Closing it closes ``inner``. Wrap in ``io.BufferedReader`` for a full ``BinaryIO``.
    """

    def __init__(self, inner: BinaryIO, limit: int | None) -> None:
        super().__init__()
        self._inner = inner
        self._remaining = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = len(view)
        if self._remaining is not None:
            want = min(want, self._remaining)
        if want <= 0:
            return 0
        data = self._read(want)
        n = len(data)
        view[:n] = data
        if self._remaining is not None:
            self._remaining -= n
        return n

    def _read(self, n: int) -> bytes:
        return self._inner.read(n)

    def close(self) -> None:
        try:
            if not self.closed:
                self._inner.close()
        finally:
            super().close()


class DigestVerifier:
    """Hashes chunks as they pass and enforces ``max_size``; ``verify`` at the end."""

    def __init__(self, digest: str, max_size: int | None) -> None:
        self.digest = validate_digest(digest)
        self.max_size = max_size
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_size is not None and self.size > self.max_size:
            raise BlobTooLarge(
                f"blob is larger than the limit of {self.max_size} bytes",
                details={"digest": self.digest, "max_size": self.max_size},
            )
        self._hash.update(chunk)

    @property
    def actual(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def verify(self) -> int:
        """Return the size if the bytes matched the digest, else raise ``DigestMismatch``."""
        actual = self.actual
        if actual != self.digest:
            raise DigestMismatch(
                "content does not match its digest",
                details={"expected": self.digest, "actual": actual, "size": self.size},
            )
        return self.size


def iter_chunks(source: Readable, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """``source.read(chunk_size)`` until EOF; tolerates short reads."""
    while True:
        chunk = source.read(chunk_size)
        if not chunk:
            return
        yield bytes(chunk) if not isinstance(chunk, bytes) else chunk


def drain_and_verify(digest: str, source: Readable, max_size: int | None) -> int:
    """Consume a body without storing it (the blob exists already) and verify it."""
    verifier = DigestVerifier(digest, max_size)
    for chunk in iter_chunks(source):
        verifier.update(chunk)
    return verifier.verify()


@dataclass(frozen=True)
class LeftoverUpload:
    """Bytes an interrupted put left in the store, invisible to ``iterate``: a local upload
    temp file no process is writing, or an S3 multipart upload never completed.

    ``name`` is the temp file's name or the upload's key; ``started`` when it was last
    written or initiated; ``size`` the bytes it holds where the store knows it cheaply;
    ``upload_id`` the S3 upload id.
    """

    kind: Literal["temp_file", "multipart"]
    name: str
    started: datetime
    size: int | None = None
    upload_id: str | None = None


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed blob storage (local folder or S3).

    Every method validates its digest first (``InvalidDigest`` before any I/O).
    """

    def put(self, digest: str, source: Readable, *, max_size: int | None = None) -> int:
        """Stream ``source`` into the blob ``digest``; return its size.

        Hashes while writing and makes the blob visible only when the bytes match
        (``DigestMismatch`` otherwise). More than ``max_size`` bytes: ``BlobTooLarge``,
        raised as soon as the limit is passed. If the blob already exists the body is still
        consumed and verified (and the same errors raised), but not written again. Concurrent
        puts of the same digest all succeed and leave one blob. On any error, including one
        raised by ``source.read`` (re-raised unchanged), nothing is left behind: no blob, no
        temp file, no pending multipart upload. Memory stays bounded whatever the size.
        """
        ...

    def put_file(self, digest: str, path: Path, *, max_size: int | None = None) -> int:
        """``put`` from a local file."""
        ...

    def open(self, digest: str, start: int = 0, end: int | None = None) -> BinaryIO:
        """A readable stream of bytes ``[start, end)`` (to the end when ``end`` is None).

        ``end`` past the size is clamped; ``start`` equal to the size gives an empty stream;
        ``start`` past the size, negative, or ``end < start`` raise ``InvalidRange``.
        ``BlobNotFound`` if missing. The caller closes the stream (it is a context manager).
        """
        ...

    def read_range(self, digest: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start`` (fewer at the end of the blob)."""
        ...

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int:
        """Size in bytes; ``BlobNotFound`` if missing."""
        ...

    def delete(self, digest: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        ...

    def iterate(self) -> Iterator[tuple[str, int, datetime]]:
        """Every blob as (digest, size, last modified, timezone-aware UTC), for GC.

        Unordered; ignores stray keys that are not blobs.
        """
        ...

    def leftover_uploads(self, *, older_than: datetime | None = None) -> list[LeftoverUpload]:
        """Uploads interrupted puts left behind, for GC: those the store knows no live put
        is writing, started before ``older_than`` (timezone-aware).

        A local store tells live from dead by a lock, whatever the age. S3 cannot: it lists
        every pending multipart upload initiated before ``older_than``, and none when
        ``older_than`` is ``None`` (a live upload of another process may be among them).
        """
        ...

    def discard_upload(self, upload: LeftoverUpload, *, older_than: datetime | None = None) -> bool:
        """Remove one of ``leftover_uploads``, checking again that it is still abandoned
        (and older than ``older_than``); whether it was removed."""
        ...

    def presigned_url(self, digest: str, *, expires_in: int) -> str | None:
        """A URL that GETs the blob without credentials, or ``None`` if the store cannot
        sign (local). Does not check that the blob exists."""
        ...

    def download(self, digest: str, dest: Path) -> int:
        """Write the blob to ``dest`` atomically (temp file beside it, verify, fsync, rename).

        Returns the size. ``DigestMismatch`` if the stored bytes are corrupt (``dest`` is
        then untouched).
        """
        ...

    def check(self) -> None:
        """Raise ``StorageUnavailable`` unless the store is reachable (readiness probe)."""
        ...


class BlobStoreBase:
    """Implementations of the protocol's convenience methods on top of ``put``/``open``."""

    def put(self, digest: str, source: Readable, *, max_size: int | None = None) -> int:
        raise NotImplementedError

    def open(self, digest: str, start: int = 0, end: int | None = None) -> BinaryIO:
        raise NotImplementedError

    def put_file(self, digest: str, path: Path, *, max_size: int | None = None) -> int:
        validate_digest(digest)
        with open(path, "rb") as f:
            return self.put(digest, f, max_size=max_size)

    def read_range(self, digest: str, start: int, length: int) -> bytes:
        if length < 0:
            raise InvalidRange("length must not be negative", details={"length": length})
        check_range(start, start + length)
        with self.open(digest, start, start + length) as stream:
            parts: list[bytes] = []
            remaining = length
            while remaining > 0:
                chunk = stream.read(remaining)
                if not chunk:
                    break
                parts.append(chunk)
                remaining -= len(chunk)
            return b"".join(parts)

    def download(self, digest: str, dest: Path) -> int:
        validate_digest(digest)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        verifier = DigestVerifier(digest, None)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, self.open(digest) as stream:
                for chunk in iter_chunks(stream):
                    verifier.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            size = verifier.verify()
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        fsync_dir(dest.parent)
        return size


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
