"""Local folder specifics: layout, temp files, permissions, readiness."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loreg.storage import DigestMismatch, StorageUnavailable
from loreg.storage.local import LocalBlobStore
from tests.factories.storage import ChunkedSource, blob


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


_CRASHING_PUT = """
import sys, time
from pathlib import Path
from loreg.storage.local import LocalBlobStore

class Stalls:
    sent = False
    def read(self, size=-1):
        if not self.sent:
            self.sent = True
            return b"x" * 1000
        time.sleep(3600)
        return b""

LocalBlobStore(Path(sys.argv[1])).put("sha256:" + "0" * 64, Stalls())
"""


def _temp_files(root: Path) -> list[Path]:
    return sorted((root / "tmp").glob("put-*.tmp"))


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_leftovers_of_a_killed_put_are_told_from_live_uploads(tmp_path: Path) -> None:
    """A put killed with SIGKILL leaves its temp file unlocked; a live put (here, in another
    thread) holds its lock, so only the dead one is a leftover, whatever their ages."""
    store = LocalBlobStore(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_PUT, str(tmp_path)])
    try:
        _wait_for(lambda: bool(_temp_files(tmp_path)), "the child's temp file")
        time.sleep(0.5)  # it reads its first part and stalls
    finally:
        child.kill()
        child.wait()
    [dead] = _temp_files(tmp_path)

    release = threading.Event()

    class Waits:
        def __init__(self) -> None:
            self.parts = [b"y" * 1000]

        def read(self, size: int = -1) -> bytes:
            if self.parts:
                return self.parts.pop()
            release.wait(30)
            return b""

    digest, _ = blob(10)
    failed: list[BaseException] = []

    def live_put() -> None:
        try:
            store.put(digest, Waits())
        except BaseException as exc:  # the bytes do not match the digest: expected
            failed.append(exc)

    thread = threading.Thread(target=live_put)
    thread.start()
    try:
        _wait_for(lambda: len(_temp_files(tmp_path)) == 2, "the live put's temp file")
        [live] = [p for p in _temp_files(tmp_path) if p != dead]
        for p in (dead, live):
            _age(p, 3600)
        assert [t.name for t in store.leftover_temp_files()] == [dead.name]
        assert store.leftover_temp_files()[0].size == dead.stat().st_size
        assert not store.remove_temp_file(live.name)
        assert store.remove_temp_file(dead.name)
        assert _temp_files(tmp_path) == [live]
    finally:
        release.set()
        thread.join(30)
    assert isinstance(failed[0], DigestMismatch)
    assert _temp_files(tmp_path) == []  # the live put cleaned up after itself


def test_only_old_enough_leftovers_are_taken(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    fresh = tmp_path / "tmp" / "put-fresh.tmp"
    fresh.write_bytes(b"abc")
    old = tmp_path / "tmp" / "put-old.tmp"
    old.write_bytes(b"abcd")
    _age(old, 7200)
    stray = tmp_path / "tmp" / "notes.txt"  # not an upload temp file: never touched
    stray.write_bytes(b"x")
    _age(stray, 7200)
    # a file a moment old may be a put between creating and locking it
    assert [t.name for t in store.leftover_temp_files()] == ["put-old.tmp"]
    _age(fresh, 60)
    cutoff = datetime.now(UTC) - timedelta(minutes=30)
    assert [t.name for t in store.leftover_temp_files(older_than=cutoff)] == ["put-old.tmp"]
    assert not store.remove_temp_file("put-fresh.tmp", older_than=cutoff)
    assert not store.remove_temp_file("../notes.txt")
    assert store.remove_temp_file("put-old.tmp", older_than=cutoff)
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["notes.txt", "put-fresh.tmp"]
