"""The BlobStore contract: the same tests against the local folder and S3 (moto's server)."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loreg.digests import sha256_digest
from loreg.errors import InvalidDigest, InvalidInput, NotFound, TooLarge
from loreg.storage import (
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    DigestMismatch,
    InvalidRange,
)
from tests.factories.storage import MB, ChunkedSource, Harness, blob


def test_is_a_blob_store(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)
    store.check()


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * MB])
def test_round_trip(harness: Harness, size: int) -> None:
    store = harness.store
    digest, data = blob(size)
    assert not store.exists(digest)
    assert store.put(digest, io.BytesIO(data)) == size
    assert store.exists(digest)
    assert store.size(digest) == size
    with store.open(digest) as f:
        assert f.read() == data
    assert store.read_range(digest, 0, size + 10) == data


@pytest.mark.slow
def test_round_trip_20mb_streamed(harness: Harness, tmp_path: Path) -> None:
    store = harness.store
    digest, data = blob(20 * MB, seed=1)
    assert store.put(digest, ChunkedSource(data, read_size=300_000)) == 20 * MB
    assert store.size(digest) == 20 * MB
    with store.open(digest) as f:
        got = hashlib.sha256()
        while chunk := f.read(1 << 20):
            got.update(chunk)
    assert "sha256:" + got.hexdigest() == digest
    assert store.download(digest, tmp_path / "out.bin") == 20 * MB
    assert (tmp_path / "out.bin").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name != "blobs"] == ["out.bin"]


def test_put_file(store: BlobStore, tmp_path: Path) -> None:
    digest, data = blob(12345)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    assert store.put_file(digest, src) == len(data)
    assert store.read_range(digest, 0, len(data)) == data


@pytest.mark.parametrize("size", [100, 12 * MB], ids=["single", "multipart"])
def test_wrong_digest_leaves_nothing(harness: Harness, size: int) -> None:
    store = harness.store
    _, data = blob(size)
    wrong, _ = blob(10, seed=99)
    before = harness.leftovers()
    with pytest.raises(DigestMismatch) as err:
        store.put(wrong, io.BytesIO(data))
    assert err.value.code == "digest_mismatch"
    assert isinstance(err.value, InvalidInput)
    assert err.value.details["expected"] == wrong
    assert err.value.details["actual"] == sha256_digest(data)
    assert not store.exists(wrong)
    assert harness.leftovers() == before


@pytest.mark.parametrize("size", [100, 12 * MB], ids=["single", "multipart"])
def test_source_error_mid_stream_leaves_nothing(harness: Harness, size: int) -> None:
    store = harness.store
    digest, data = blob(size)
    before = harness.leftovers()
    # Fail after more than one part has been uploaded in the multipart case.
    source = ChunkedSource(data, fail_after=size - size // 8)
    with pytest.raises(ConnectionResetError):
        store.put(digest, source)
    assert not store.exists(digest)
    assert harness.leftovers() == before
    # A retry of the same upload then succeeds.
    assert store.put(digest, io.BytesIO(data)) == size


def test_max_size(harness: Harness) -> None:
    store = harness.store
    digest, data = blob(5000)
    before = harness.leftovers()
    with pytest.raises(BlobTooLarge) as err:
        store.put(digest, io.BytesIO(data), max_size=4999)
    assert err.value.code == "blob_too_large"
    assert isinstance(err.value, TooLarge)
    assert not store.exists(digest)
    assert harness.leftovers() == before
    assert store.put(digest, io.BytesIO(data), max_size=5000) == 5000


@pytest.mark.slow
def test_max_size_stops_a_large_upload(harness: Harness) -> None:
    store = harness.store
    digest, data = blob(12 * MB)
    before = harness.leftovers()
    with pytest.raises(BlobTooLarge):
        store.put(digest, io.BytesIO(data), max_size=11 * MB)
    assert harness.leftovers() == before


def test_put_existing_still_verifies(harness: Harness) -> None:
    store = harness.store
    digest, data = blob(4096)
    store.put(digest, io.BytesIO(data))
    stored = harness.leftovers()
    # Same bytes again: accepted, nothing new stored.
    assert store.put(digest, io.BytesIO(data)) == 4096
    # Wrong bytes for an existing digest: still refused, and the blob is untouched.
    with pytest.raises(DigestMismatch):
        store.put(digest, io.BytesIO(b"x" + data[1:]))
    with pytest.raises(BlobTooLarge):
        store.put(digest, io.BytesIO(data), max_size=100)
    with pytest.raises(ConnectionResetError):
        store.put(digest, ChunkedSource(data, read_size=1000, fail_after=2000))
    assert harness.leftovers() == stored
    assert store.read_range(digest, 0, 5000) == data


@pytest.mark.parametrize("size", [300_000, 12 * MB], ids=["single", "multipart"])
def test_concurrent_puts_of_one_digest(harness: Harness, size: int) -> None:
    store = harness.store
    digest, data = blob(size, seed=7)
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def put() -> None:
        barrier.wait()
        try:
            results.append(store.put(digest, ChunkedSource(data, read_size=100_000)))
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=put) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [size, size, size]
    assert [d for d, _, _ in store.iterate()] == [digest]
    assert len(harness.leftovers()) == 1
    with store.open(digest) as f:
        assert f.read() == data


def test_ranged_reads(store: BlobStore) -> None:
    digest, data = blob(10_000, seed=3)
    store.put(digest, io.BytesIO(data))
    with store.open(digest, 100, 200) as f:
        assert f.read() == data[100:200]
    with store.open(digest, 9_000) as f:
        assert f.read() == data[9_000:]
    with store.open(digest, 9_990, 20_000) as f:  # end clamped to the size
        assert f.read() == data[9_990:]
    with store.open(digest, 10_000) as f:  # start == size: empty
        assert f.read() == b""
    with store.open(digest, 50, 50) as f:
        assert f.read() == b""
    with store.open(digest, 1, 4) as f:  # small reads from a stream
        assert f.read(1) == data[1:2]
        assert f.read(10) == data[2:4]
        assert f.read(10) == b""
    assert store.read_range(digest, 4_000, 3) == data[4_000:4_003]
    assert store.read_range(digest, 9_999, 100) == data[9_999:]
    assert store.read_range(digest, 0, 0) == b""


@pytest.mark.parametrize("start,end", [(10_001, None), (10_001, 10_002), (-1, None), (5, 4)])
def test_bad_ranges(store: BlobStore, start: int, end: int | None) -> None:
    digest, data = blob(10_000)
    store.put(digest, io.BytesIO(data))
    with pytest.raises(InvalidRange) as err:
        store.open(digest, start, end).close()
    assert err.value.code == "invalid_range"
    with pytest.raises(InvalidRange):
        store.read_range(digest, 0, -1)


def test_missing_blob(store: BlobStore, tmp_path: Path) -> None:
    digest, _ = blob(10, seed=42)
    assert not store.exists(digest)
    for call in (
        lambda: store.size(digest),
        lambda: store.open(digest).close(),
        lambda: store.open(digest, 5, 10).close(),
        lambda: store.read_range(digest, 0, 10),
        lambda: store.download(digest, tmp_path / "x"),
    ):
        with pytest.raises(BlobNotFound) as err:
            call()
        assert err.value.code == "blob_not_found"
        assert isinstance(err.value, NotFound)
    assert list(tmp_path.iterdir()) == [] or all(p.name == "blobs" for p in tmp_path.iterdir())


BAD_DIGESTS = [
    "../x",
    "sha256:../../etc",
    "sha256:../../etc/passwd" + "0" * 48,
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "g" * 64,
    "md5:" + "a" * 32,
    "sha512:" + "a" * 128,
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 64 + "\n",
    " sha256:" + "a" * 64,
    "sha256:" + "a" * 62 + "/.",
    "a" * 64,
    "",
]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_bad_digests_refused_before_io(harness: Harness, bad: str, tmp_path: Path) -> None:
    store = harness.store
    before = harness.leftovers()
    source = ChunkedSource(b"payload", fail_after=0)  # reading it would raise
    calls = [
        lambda: store.put(bad, source),
        lambda: store.put_file(bad, tmp_path / "does-not-matter"),
        lambda: store.open(bad),
        lambda: store.read_range(bad, 0, 1),
        lambda: store.exists(bad),
        lambda: store.size(bad),
        lambda: store.delete(bad),
        lambda: store.presigned_url(bad, expires_in=60),
        lambda: store.download(bad, tmp_path / "out"),
    ]
    for call in calls:
        with pytest.raises(InvalidDigest) as err:
            call()
        assert err.value.code == "invalid_digest"
        assert isinstance(err.value, InvalidInput)
    assert harness.leftovers() == before
    assert not (tmp_path / "out").exists()


def test_iterate_and_delete(store: BlobStore) -> None:
    assert list(store.iterate()) == []
    blobs = dict(blob(n * 100, seed=n) for n in range(1, 4))
    start = datetime.now(UTC) - timedelta(minutes=5)
    for digest, data in blobs.items():
        store.put(digest, io.BytesIO(data))
    listed = {d: (size, modified) for d, size, modified in store.iterate()}
    assert set(listed) == set(blobs)
    for digest, (size, modified) in listed.items():
        assert size == len(blobs[digest])
        assert modified.tzinfo is not None
        assert start <= modified <= datetime.now(UTC) + timedelta(minutes=5)

    gone = next(iter(blobs))
    store.delete(gone)
    store.delete(gone)  # idempotent
    assert not store.exists(gone)
    assert {d for d, _, _ in store.iterate()} == set(blobs) - {gone}


def test_interrupted_uploads_are_listed_and_discarded(harness: Harness) -> None:
    """What GC asks of every store: the uploads a crash left behind, older than a cutoff,
    and their removal, which leaves nothing behind in the backing storage."""
    store = harness.store
    digest, data = blob(1000)
    store.put(digest, io.BytesIO(data))  # a completed put leaves nothing to collect
    later = datetime.now(UTC) + timedelta(hours=1)
    assert store.leftover_uploads(older_than=later) == []
    before = harness.leftovers()

    harness.interrupt_upload(3600.0)
    [left] = store.leftover_uploads(older_than=later)
    assert left.started.tzinfo is not None and left.started < later
    earlier = left.started - timedelta(seconds=1)
    assert store.leftover_uploads(older_than=earlier) == []  # younger than the cutoff
    assert not store.discard_upload(left, older_than=earlier)
    assert store.leftover_uploads(older_than=later) == [left]  # listing changes nothing

    assert store.discard_upload(left, older_than=later)
    assert store.leftover_uploads(older_than=later) == []
    assert harness.leftovers() == before
    assert store.exists(digest)


def test_download_is_atomic_and_verified(harness: Harness, tmp_path: Path) -> None:
    store = harness.store
    digest, data = blob(50_000)
    store.put(digest, io.BytesIO(data))
    dest = tmp_path / "dl" / "adapter.safetensors"
    assert store.download(digest, dest) == len(data)
    assert dest.read_bytes() == data

    harness.corrupt(digest, b"rotten" + data[6:])
    dest.write_bytes(b"previous")
    with pytest.raises(DigestMismatch):
        store.download(digest, dest)
    assert dest.read_bytes() == b"previous"
    assert sorted(os.listdir(dest.parent)) == ["adapter.safetensors"]


def test_presigned_url_shape(harness: Harness) -> None:
    digest, data = blob(10)
    harness.store.put(digest, io.BytesIO(data))
    url = harness.store.presigned_url(digest, expires_in=60)
    if harness.kind == "local":
        assert url is None
    else:
        assert url is not None and url.startswith("http")
