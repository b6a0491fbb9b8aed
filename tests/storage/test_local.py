"""Local folder specifics: layout, temp files, permissions, readiness."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from loreg.storage import DigestMismatch, StorageUnavailable
from loreg.storage.local import LocalBlobStore
from tests.storage.test_contract import ChunkedSource, blob


def test_layout(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    digest, data = blob(1000)
    store.put(digest, io.BytesIO(data))
    hex_ = digest.removeprefix("sha256:")
    path = tmp_path / "store" / "sha256" / hex_[:2] / hex_
    assert path.read_bytes() == data
    assert store.path_for(digest) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path / "store" / "tmp") == []


def test_no_temp_file_after_failures(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest, data = blob(3_000_000)
    with pytest.raises(DigestMismatch):
        store.put(blob(1, seed=4)[0], io.BytesIO(data))
    with pytest.raises(ConnectionResetError):
        store.put(digest, ChunkedSource(data, fail_after=2_000_000))
    assert os.listdir(tmp_path / "tmp") == []
    assert not any(f for _, _, f in os.walk(tmp_path / "sha256"))


def test_iterate_ignores_strays(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest, data = blob(10)
    store.put(digest, io.BytesIO(data))
    hex_ = digest.removeprefix("sha256:")
    (tmp_path / "tmp" / "put-123.tmp").write_bytes(b"half")
    (tmp_path / "sha256" / "zz").mkdir()
    (tmp_path / "sha256" / "zz" / hex_).write_bytes(b"misplaced")
    (tmp_path / "sha256" / hex_[:2] / "notes.txt").write_bytes(b"x")
    (tmp_path / "sha256" / "README").write_bytes(b"x")
    assert [d for d, _, _ in store.iterate()] == [digest]


def test_presigned_url_is_none(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest, data = blob(10)
    store.put(digest, io.BytesIO(data))
    assert store.presigned_url(digest, expires_in=60) is None


def test_check(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "s")
    store.check()
    (tmp_path / "s" / "tmp").rmdir()
    with pytest.raises(StorageUnavailable) as err:
        store.check()
    assert err.value.code == "storage_unavailable"


def test_root_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageUnavailable):
        LocalBlobStore(tmp_path / "file" / "blobs")


def test_open_full_blob_is_a_real_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest, data = blob(100)
    store.put(digest, io.BytesIO(data))
    with store.open(digest) as f:
        assert f.seekable()
        f.seek(50)
        assert f.read() == data[50:]
