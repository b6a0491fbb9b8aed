"""Content-addressed local cache of blobs under ``LOREG_HOME/cache``.

Blobs live at ``cache/blobs/sha256/<first two hex>/<hex>``; a download in progress lives
beside its final name as ``<hex>.incomplete`` so an interrupted pull resumes from where it
stopped (Range) instead of starting again. A blob is only ever renamed to its final name after
its bytes hashed to its digest, and it is hashed again whenever it is copied out (in the same
read as the copy), so a blob that was corrupted on disk is noticed, dropped and fetched again.

The hash index (``cache/hashes.json``) remembers the digest of local files by their stat
(device, inode, size, mtime, ctime), the way git's index does, so pushing an unchanged folder
does not re-read gigabytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from loreg.refs import DIGEST_PATTERN

CHUNK = 4 * 1024 * 1024

Progress = Callable[[int], object]


def _hex(digest: str) -> str:
    m = DIGEST_PATTERN.match(digest)
    if not m:
        raise ValueError(f"invalid digest {digest[:80]!r}: expected sha256:<64 lower-case hex>")
    return m.group(1)


def hash_stream_file(
    path: Path, progress: Progress | None = None, copy_to: BinaryIO | None = None
) -> tuple[str, int]:
    """sha256 of a file, read in chunks (memory stays bounded); returns (digest, size).

    With ``copy_to`` the bytes are also written there, so a copy is verified in the same read.
    """
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            if copy_to is not None:
                copy_to.write(view[:n])
            size += n
            if progress is not None:
                progress(n)
    return "sha256:" + h.hexdigest(), size


class HashIndex:
    """Digests of local files keyed by their stat, so unchanged files are not re-hashed.

    An entry is trusted only when the file's mtime is older than the moment it was hashed
    (minus a margin), so a file written in the same timestamp tick as it was hashed is never
    served from the index ("racily clean" in git's terms).
    """

    RACY_MARGIN_NS = 50_000_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, list[int | str]] = {}
        self._dirty = False
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                self._entries = data

    @staticmethod
    def _key(st: os.stat_result) -> list[int]:
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def lookup(self, path: Path) -> tuple[str, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        with self._lock:
            entry = self._entries.get(str(path.resolve()))
        if not entry or entry[:5] != self._key(st):
            return None
        hashed_at, digest = entry[5], entry[6]
        if not isinstance(hashed_at, int) or st.st_mtime_ns >= hashed_at - self.RACY_MARGIN_NS:
            return None
        return str(digest), st.st_size

    def record(self, path: Path, st: os.stat_result, hashed_at_ns: int, digest: str) -> None:
        with self._lock:
            self._entries[str(path.resolve())] = [*self._key(st), hashed_at_ns, digest]
            self._dirty = True

    def save(self) -> None:
        """Write the index atomically (temp file + rename); failures only cost speed."""
        with self._lock:
            if not self._dirty:
                return
            # Keep the index from growing without bound: drop entries of files that are gone.
            if len(self._entries) > 10_000:
                self._entries = {k: v for k, v in self._entries.items() if os.path.exists(k)}
            data = json.dumps(self._entries)
            self._dirty = False
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".hashes.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, self.path)


def hash_file(
    path: Path, index: HashIndex | None = None, progress: Progress | None = None
) -> tuple[str, int]:
    """The digest and size of ``path``, from the index when the file is unchanged."""
    if index is not None:
        hit = index.lookup(path)
        if hit is not None:
            if progress is not None:
                progress(hit[1])
            return hit
    started = time.time_ns()
    st_before = path.stat()
    digest, size = hash_stream_file(path, progress)
    if index is not None:
        st_after = path.stat()
        if HashIndex._key(st_before) == HashIndex._key(st_after) and size == st_after.st_size:
            index.record(path, st_after, started, digest)
    return digest, size


class BlobCache:
    """The blob cache: verified blobs by digest, plus resumable partial downloads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"

    @classmethod
    def under_home(cls, home: Path) -> BlobCache:
        return cls(home / "cache")

    def hash_index(self) -> HashIndex:
        return HashIndex(self.root / "hashes.json")

    def path(self, digest: str) -> Path:
        hex_ = _hex(digest)
        return self.blobs / "sha256" / hex_[:2] / hex_

    def partial_path(self, digest: str) -> Path:
        p = self.path(digest)
        return p.with_name(p.name + ".incomplete")

    def copy_verified(self, digest: str, size: int, dest: Path) -> bool:
        """Copy the cached blob to ``dest``, hashing it on the way; whether it was intact.

        False when the blob is absent; a corrupt one (wrong size or bytes) is deleted, and so
        is whatever of it reached ``dest``.
        """
        p = self.path(digest)
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_size != size:
            self._discard(p)
            return False
        with open(dest, "wb") as out:
            actual, _ = hash_stream_file(p, copy_to=out)
        if actual != digest:
            dest.unlink()
            self._discard(p)
            return False
        return True

    def commit_partial(self, digest: str, computed: str) -> Path:
        """Move a finished download to its final name; ``computed`` is what its bytes hash to."""
        partial = self.partial_path(digest)
        if computed != digest:
            self._discard(partial)
            raise ValueError(f"downloaded bytes hash to {computed}, expected {digest}")
        final = self.path(digest)
        os.replace(partial, final)
        return final

    def add_file(self, src: Path, digest: str) -> Path:
        """Copy a local file whose digest is known into the cache (atomically)."""
        final = self.path(digest)
        if final.exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".add.", suffix=".tmp")
        os.close(fd)
        try:
            import shutil

            shutil.copyfile(src, tmp)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return final

    @staticmethod
    def _discard(p: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
