"""Blobs in a local folder: ``<root>/sha256/ab/<hex>``, written via ``<root>/tmp``.

A put writes a temp file in ``<root>/tmp`` (same filesystem, so the rename is atomic),
hashes while writing, fsyncs, and renames into place only when the digest matches. A crash
leaves at most a temp file, never a finished-looking blob; ``iterate`` ignores ``tmp``.

A put holds an exclusive ``flock`` on its temp file while it writes; the kernel drops the
lock when the process dies, however it dies. So a temp file nobody holds a lock on is a
crashed put's leftover, whatever its age, and :meth:`LocalBlobStore.leftover_temp_files`
can find them safely while other processes upload into the same folder (the API at
start-up and GC remove them).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from loreg.digests import validate_digest
from loreg.storage.base import (
    BlobNotFound,
    BlobStoreBase,
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
    fsync_dir,
    iter_chunks,
)

try:
    import fcntl
except ImportError:  # not POSIX: no leftover detection by lock (GC's age rule still applies)
    fcntl = None  # type: ignore[assignment]

TEMP_PREFIX = "put-"
TEMP_SUFFIX = ".tmp"
#: A temp file younger than this is never taken for a leftover: its writer may be between
#: creating it and locking it.
TEMP_MIN_AGE_SECONDS = 2.0


@dataclass(frozen=True)
class TempFile:
    """An upload temp file that no process is writing."""

    name: str
    size: int
    modified: datetime


def _try_lock(fd: int) -> bool:
    """Whether this process could take the exclusive lock (so nobody else holds it)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class LocalBlobStore(BlobStoreBase):
    """Content-addressed blobs under ``root`` (created if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.blob_dir = self.root / "sha256"
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self.blob_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot create blob folder {self.root}: {exc.strerror}",
                details={"root": str(self.root)},
            ) from exc

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, digest: str) -> Path:
        """Where the blob lives (validated, so never outside ``root``)."""
        return self.root / blob_key(digest)

    def put(self, digest: str, source: Readable, *, max_size: int | None = None) -> int:
        path = self.path_for(digest)
        if path.is_file():
            return drain_and_verify(digest, source, max_size)
        verifier = DigestVerifier(digest, max_size)
        try:
            fd, tmp_name = tempfile.mkstemp(
                dir=self.tmp_dir, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX
            )
        except OSError as exc:
            raise StorageUnavailable(f"cannot write to {self.tmp_dir}: {exc.strerror}") from exc
        # The lock lives as long as ``fd`` (writes go through a duplicate), so the file is
        # never unlocked before it has been renamed into place or removed.
        _try_lock(fd)
        try:
            with os.fdopen(os.dup(fd), "wb") as out:
                for chunk in iter_chunks(source):  # the source's own errors pass unchanged
                    verifier.update(chunk)
                    with _store_errors("cannot write blob"):
                        out.write(chunk)
                with _store_errors("cannot write blob"):
                    out.flush()
                    os.fsync(out.fileno())
            size = verifier.verify()
            with _store_errors("cannot write blob"):
                os.chmod(tmp_name, 0o644)
                path.parent.mkdir(parents=True, exist_ok=True)
                # Concurrent puts of one digest: each renames identical bytes over the other.
                os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return size

    def leftover_temp_files(self, *, older_than: datetime | None = None) -> list[TempFile]:
        """Upload temp files that no live process is writing (crashed puts), optionally
        only those last modified before ``older_than``."""
        found = []
        for path in self._temp_paths():
            leftover = self._leftover(path, older_than)
            if leftover is not None:
                found.append(leftover)
        return sorted(found, key=lambda t: t.name)

    def remove_temp_file(self, name: str, *, older_than: datetime | None = None) -> bool:
        """Delete one leftover temp file, checking again under its lock that nobody writes
        it; whether it was deleted."""
        path = self.tmp_dir / name
        if path.parent != self.tmp_dir or not self._is_temp_name(name):
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not self._old_enough(st.st_mtime, older_than) or not _try_lock(fd):
                return False
            with _store_errors("cannot delete a temp file"):
                path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)

    def leftover_uploads(self, *, older_than: datetime | None = None) -> list[LeftoverUpload]:
        return [
            LeftoverUpload("temp_file", t.name, t.modified, size=t.size)
            for t in self.leftover_temp_files(older_than=older_than)
        ]

    def discard_upload(self, upload: LeftoverUpload, *, older_than: datetime | None = None) -> bool:
        if upload.kind != "temp_file":
            return False
        return self.remove_temp_file(upload.name, older_than=older_than)

    def _temp_paths(self) -> list[Path]:
        try:
            return [
                Path(e.path)
                for e in os.scandir(self.tmp_dir)
                if self._is_temp_name(e.name) and e.is_file(follow_symlinks=False)
            ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageUnavailable(f"cannot list {self.tmp_dir}: {exc.strerror}") from exc

    @staticmethod
    def _is_temp_name(name: str) -> bool:
        return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)

    @staticmethod
    def _old_enough(mtime: float, older_than: datetime | None) -> bool:
        if time.time() - mtime < TEMP_MIN_AGE_SECONDS:
            return False
        return older_than is None or mtime < older_than.timestamp()

    def _leftover(self, path: Path, older_than: datetime | None) -> TempFile | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # renamed into place or removed meanwhile
            return None
        try:
            st = os.fstat(fd)
            if not self._old_enough(st.st_mtime, older_than) or not _try_lock(fd):
                return None
            return TempFile(path.name, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC))
        finally:
            os.close(fd)  # releases the probe's lock

    def open(self, digest: str, start: int = 0, end: int | None = None) -> BinaryIO:
        path = self.path_for(digest)
        check_range(start, end)
        try:
            f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except FileNotFoundError:
            raise BlobNotFound("blob not found", details={"digest": digest}) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read blob: {exc.strerror}") from exc
        try:
            size = os.fstat(f.fileno()).st_size
            if start > size:
                raise InvalidRange(
                    "range starts past the end of the blob",
                    details={"digest": digest, "start": start, "size": size},
                )
            f.seek(start)
        except BaseException:
            f.close()
            raise
        if start == 0 and end is None:
            return f
        limit = None if end is None else max(0, min(end, size) - start)
        return io.BufferedReader(RangeReader(f, limit))

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def size(self, digest: str) -> int:
        path = self.path_for(digest)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFound("blob not found", details={"digest": digest}) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat blob: {exc.strerror}") from exc

    def delete(self, digest: str) -> None:
        path = self.path_for(digest)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete blob: {exc.strerror}") from exc

    def iterate(self) -> Iterator[tuple[str, int, datetime]]:
        try:
            fan_out = sorted(os.scandir(self.blob_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageUnavailable(f"cannot list blobs: {exc.strerror}") from exc
        for sub in fan_out:
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                digest = digest_from_key(f"sha256/{sub.name}/{entry.name}")
                if digest is None or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # deleted while listing
                    continue
                yield digest, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC)

    def presigned_url(self, digest: str, *, expires_in: int) -> str | None:
        validate_digest(digest)
        return None

    def check(self) -> None:
        for d in (self.tmp_dir, self.blob_dir):
            if not d.is_dir() or not os.access(d, os.W_OK | os.X_OK):
                raise StorageUnavailable(
                    f"blob folder {d} is missing or not writable", details={"path": str(d)}
                )


@contextlib.contextmanager
def _store_errors(what: str) -> Iterator[None]:
    """Turn the store's own ``OSError`` (disk full, permissions) into ``StorageUnavailable``."""
    try:
        yield
    except OSError as exc:
        raise StorageUnavailable(f"{what}: {exc.strerror or exc}") from exc
