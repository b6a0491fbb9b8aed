"""A worker's local disk cache of base checkpoints, keyed by fingerprint.

Merging into the same base again should not download it again. Each entry is a folder
``<root>/<fingerprint hex>/`` holding the base's files as the registry lists them; it is
built in a temp folder beside it (every file downloaded with its digest checked) and renamed
into place only when complete, so a crash never leaves an entry that looks finished.

Bounded: after adding an entry, the least recently used entries are removed until the total
is under ``max_bytes``. An entry in use (``checkout``) holds a shared ``flock`` on its lock
file; eviction takes the lock exclusively without waiting and skips entries it cannot get,
so a merge never loses its base under it, whichever process on the machine evicts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from loreg.digests import digest_hex
from loreg.errors import InvalidInput
from loreg.storage import BlobStore

_COMPLETE = ".complete"  # marker; its mtime is the entry's last use


@dataclass(frozen=True)
class CachedFile:
    path: str  # relative, POSIX
    digest: str
    size: int


def _safe_relpath(path: str) -> Path:
    rel = PurePosixPath(path)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise InvalidInput(f"unsafe file path {path!r} in a base model's file list")
    return Path(*rel.parts)


class BaseCache:
    """``checkout(fingerprint, files, store)`` -> a local folder with the base's files."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _lock_path(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    @contextlib.contextmanager
    def _lock(self, key: str, mode: int) -> Iterator[IO[bytes]]:
        with open(self._lock_path(key), "ab") as f:
            fcntl.flock(f.fileno(), mode)
            try:
                yield f
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def entry(self, fingerprint: str) -> Path:
        return self.root / digest_hex(fingerprint)

    def has(self, fingerprint: str) -> bool:
        return (self.entry(fingerprint) / _COMPLETE).is_file()

    @contextlib.contextmanager
    def checkout(
        self, fingerprint: str, files: Sequence[CachedFile], store: BlobStore
    ) -> Iterator[Path]:
        """The base's folder, downloaded on a miss; held (not evictable) inside the block."""
        key = digest_hex(fingerprint)
        entry = self.root / key
        for _ in range(5):
            with self._lock(key, fcntl.LOCK_EX):
                if (entry / _COMPLETE).is_file():
                    self.hits += 1
                else:
                    self.misses += 1
                    self._fill(entry, files, store)
                os.utime(entry / _COMPLETE)
            # shared while in use: other users may share it, evictors skip it
            with self._lock(key, fcntl.LOCK_SH):
                if not (entry / _COMPLETE).is_file():
                    continue  # evicted between the two locks: fetch again
                self.evict(keep=key)
                yield entry
                return
        raise RuntimeError(f"base cache entry {key} keeps disappearing")  # pragma: no cover

    def _fill(self, entry: Path, files: Sequence[CachedFile], store: BlobStore) -> None:
        tmp = self.root / f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        try:
            for f in files:
                dest = tmp / _safe_relpath(f.path)
                store.download(f.digest, dest)  # verifies the digest, atomic
            (tmp / _COMPLETE).write_bytes(b"")
            if entry.exists():
                shutil.rmtree(entry)  # an incomplete leftover of a crash
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def invalidate(self, fingerprint: str) -> None:
        """Drop an entry (its bytes did not match the fingerprint: do not trust them again)."""
        key = digest_hex(fingerprint)
        with self._lock(key, fcntl.LOCK_EX):
            shutil.rmtree(self.root / key, ignore_errors=True)

    def _entries(self) -> list[tuple[float, int, str]]:
        out = []
        for child in self.root.iterdir():
            marker = child / _COMPLETE
            if child.is_dir() and not child.name.startswith(".") and marker.is_file():
                size = sum(p.stat().st_size for p in child.rglob("*") if p.is_file())
                out.append((marker.stat().st_mtime, size, child.name))
        return out

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def evict(self, *, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the total fits; returns removed keys."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        removed: list[str] = []
        for _, size, key in entries:
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            with open(self._lock_path(key), "ab") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use
                try:
                    shutil.rmtree(self.root / key, ignore_errors=True)
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            total -= size
            removed.append(key)
        # stale temp folders of crashed downloads (older than an hour)
        for child in self.root.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if time.time() - child.stat().st_mtime > 3600:
                    shutil.rmtree(child, ignore_errors=True)
        return removed
