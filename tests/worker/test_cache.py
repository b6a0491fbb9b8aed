"""The base cache: one download per fingerprint, digest-checked, LRU-bounded, in-use kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loreg.digests import sha256_digest
from loreg.storage import DigestMismatch
from loreg.storage.local import LocalBlobStore
from loreg.worker.cache import BaseCache, CachedFile


def _put(store: LocalBlobStore, data: bytes) -> CachedFile:
    digest = sha256_digest(data)
    store.put_file(digest, _tmpfile(store.root.parent, data))
    return CachedFile("model.safetensors", digest, len(data))


def _tmpfile(root: Path, data: bytes) -> Path:
    path = root / f"src-{time.monotonic_ns()}"
    path.write_bytes(data)
    return path


def fp(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def test_hit_miss_and_lru_eviction(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    cache = BaseCache(tmp_path / "cache", max_bytes=250)
    files = [_put(store, bytes([i]) * 100) for i in range(3)]
    with cache.checkout(fp(1), [files[0]], store) as d:
        assert (d / "model.safetensors").read_bytes() == b"\x00" * 100
    with cache.checkout(fp(1), [files[0]], store):
        pass
    assert (cache.misses, cache.hits) == (1, 1)
    with cache.checkout(fp(2), [files[1]], store):
        pass
    os.utime(cache.entry(fp(1)) / ".complete", (1, 1))  # 1 is now least recently used
    with cache.checkout(fp(3), [files[2]], store):
        pass
    assert not cache.has(fp(1)) and cache.has(fp(2)) and cache.has(fp(3))
    assert cache.total_bytes() <= 250


def test_entry_in_use_is_not_evicted(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    cache = BaseCache(tmp_path / "cache", max_bytes=150)
    a, b = _put(store, b"a" * 100), _put(store, b"b" * 100)
    with cache.checkout(fp(1), [a], store) as held:
        with cache.checkout(fp(2), [b], store):
            pass
        assert (held / "model.safetensors").is_file()  # held: skipped by eviction


def test_corrupt_blob_leaves_no_entry(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    cache = BaseCache(tmp_path / "cache", max_bytes=10**6)
    good = _put(store, b"x" * 64)
    blob = next(
        p
        for p in (tmp_path / "blobs").rglob("*")
        if p.is_file() and good.digest.removeprefix("sha256:") in p.name
    )
    blob.chmod(0o644)
    blob.write_bytes(b"y" * 64)  # bit rot in the store
    with pytest.raises(DigestMismatch), cache.checkout(fp(9), [good], store):
        pass
    assert not cache.has(fp(9))
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
