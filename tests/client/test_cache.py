from __future__ import annotations

import os
import time
from pathlib import Path

from loreg.client.cache import BlobCache, HashIndex, hash_file, hash_stream_file
from loreg.digests import sha256_digest


def test_hash_stream_file_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 7)  # more than two chunks
    p = tmp_path / "f"
    p.write_bytes(data)
    seen: list[int] = []
    assert hash_stream_file(p, seen.append) == (sha256_digest(data), len(data))
    assert sum(seen) == len(data)


def test_blob_paths_are_content_addressed(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    d = sha256_digest(b"x")
    hex_ = d.removeprefix("sha256:")
    assert cache.path(d) == tmp_path / "blobs" / "sha256" / hex_[:2] / hex_


def test_corrupt_cached_blob_is_detected_and_dropped(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    d = sha256_digest(b"payload")
    cache.add_file(src, d)
    out = tmp_path / "out"
    assert cache.copy_verified(d, 7, out)  # verified in the same read as the copy
    assert out.read_bytes() == b"payload"
    out.unlink()
    cache.path(d).write_bytes(b"pAyload")  # same size, different bytes
    assert not cache.copy_verified(d, 7, out)
    assert not cache.path(d).exists()
    assert not out.exists()  # nothing of the corrupt blob is left behind


def test_hash_index_skips_unchanged_files_and_notices_changes(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"one")
    past = time.time() - 10
    os.utime(p, (past, past))
    index = HashIndex(tmp_path / "hashes.json")
    assert hash_file(p, index) == (sha256_digest(b"one"), 3)
    index.save()
    index2 = HashIndex(tmp_path / "hashes.json")
    assert index2.lookup(p) == (sha256_digest(b"one"), 3)
    p.write_bytes(b"two")  # same size, new content: stat changes, entry no longer trusted
    assert index2.lookup(p) is None
    assert hash_file(p, index2) == (sha256_digest(b"two"), 3)


def test_hash_index_never_trusts_a_racily_clean_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"fresh")  # mtime == now: could still change within the same tick
    index = HashIndex(tmp_path / "hashes.json")
    hash_file(p, index)
    assert index.lookup(p) is None
