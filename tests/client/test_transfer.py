"""Push and pull against a real (tiny) HTTP server that injects failures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loreg.client import Client, Conflict, ConnectionFailed, IntegrityError, NotFound
from loreg.digests import sha256_digest
from tests.client.fake_registry import FakeRegistry


def _same_tree(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_push_uploads_only_missing_and_repush_uploads_nothing(
    client: Client, fake: FakeRegistry, adapter_dir: Path
) -> None:
    first = client.push(adapter_dir, "acme/bot:prod", base="org/base", labels={"run": "7"})
    assert first.uploaded_files == 3
    assert first.uploaded_bytes == first.total_bytes == fake.state.uploaded_bytes
    assert first.version.number == 1
    sent = [r for r in fake.state.requests if r[0] == "POST" and r[1].endswith("/versions")]
    assert len(sent) == 1

    again = client.push(adapter_dir, "acme/bot:prod", base="org/base")
    assert (again.uploaded_files, again.uploaded_bytes) == (0, 0)
    assert again.version == first.version


def test_push_of_a_changed_file_uploads_that_file_only(
    client: Client, fake: FakeRegistry, adapter_dir: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    (adapter_dir / "README.md").write_text("changed\n")
    second = client.push(adapter_dir, "acme/bot")
    assert second.uploaded_files == 1 and second.uploaded_bytes == len("changed\n")
    assert second.version.number == 2


def test_pull_is_byte_identical_and_a_cached_pull_transfers_nothing(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot:prod")
    out = client.pull("acme/bot:prod", tmp_path / "out")
    _same_tree(adapter_dir, out.path)
    assert out.downloaded_bytes == fake.state.served_bytes > 0

    served = fake.state.served_bytes
    again = client.pull("acme/bot@1", tmp_path / "out2")
    _same_tree(adapter_dir, again.path)
    assert again.downloaded_bytes == 0
    assert again.cached_bytes == sum(f.stat().st_size for f in adapter_dir.iterdir())
    assert fake.state.served_bytes == served


def test_a_corrupt_cached_blob_is_fetched_again(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    client.pull("acme/bot", tmp_path / "a")
    big = (adapter_dir / "adapter_model.safetensors").read_bytes()
    cached = client.cache.path(sha256_digest(big))
    data = bytearray(cached.read_bytes())
    data[1000] ^= 0xFF
    cached.write_bytes(bytes(data))
    served = fake.state.served_bytes

    out = client.pull("acme/bot", tmp_path / "b")
    assert (out.path / "adapter_model.safetensors").read_bytes() == big
    assert out.downloaded_bytes == len(big)
    assert fake.state.served_bytes == served + len(big)
    assert cached.read_bytes() == big


def test_5xx_answers_are_retried(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    fake.state.fail_5xx = 2
    out = client.pull("acme/bot", tmp_path / "out")
    _same_tree(adapter_dir, out.path)


def test_a_cut_connection_resumes_with_a_range_request(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    big = (adapter_dir / "adapter_model.safetensors").read_bytes()
    fake.state.cut_after = len(big) // 2
    fake.state.cut_times = 1
    fake.state.requests.clear()
    out = client.pull("acme/bot", tmp_path / "out")
    _same_tree(adapter_dir, out.path)
    ranges = [h.get("Range") for m, _, h in fake.state.requests if m == "GET" and h.get("Range")]
    assert any(r and r.startswith("bytes=") and r != "bytes=0-" for r in ranges)
    # Nothing was downloaded twice: the second request continued where the first stopped.
    assert fake.state.served_bytes == sum(f.stat().st_size for f in adapter_dir.iterdir())


def test_without_range_support_a_resume_starts_over(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    fake.state.ranges = False
    big = (adapter_dir / "adapter_model.safetensors").read_bytes()
    fake.state.cut_after = len(big) // 3
    fake.state.cut_times = 1
    out = client.pull("acme/bot", tmp_path / "out")
    assert (out.path / "adapter_model.safetensors").read_bytes() == big


def test_an_interrupted_pull_leaves_no_folder_and_the_next_pull_resumes(
    fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with Client(fake.url, "t", home=home, retries=1, backoff=0.01) as c:
        c.push(adapter_dir, "acme/bot")
    big = (adapter_dir / "adapter_model.safetensors").read_bytes()
    fake.state.cut_after = len(big) // 5
    fake.state.cut_times = 100  # every attempt is cut short: two tries, then the pull gives up
    dest = tmp_path / "out"
    with Client(fake.url, "t", home=home, retries=1, backoff=0.01) as c:
        with pytest.raises(ConnectionFailed):
            c.pull("acme/bot", dest)
        assert not dest.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
        partial = c.cache.partial_path(sha256_digest(big))
        assert partial.exists() and 0 < partial.stat().st_size < len(big)

    fake.state.cut_times = 0
    fake.state.requests.clear()
    with Client(fake.url, "t", home=home, retries=1, backoff=0.01) as c:
        out = c.pull("acme/bot", dest)
    _same_tree(adapter_dir, out.path)
    assert any(h.get("Range") for m, _, h in fake.state.requests if m == "GET")


def test_redirects_to_another_origin_do_not_carry_the_token(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    fake.state.redirect_to = fake.store_url
    fake.state.requests.clear()
    out = client.pull("acme/bot", tmp_path / "out")
    _same_tree(adapter_dir, out.path)
    store_gets = [h for m, p, h in fake.state.requests if m == "GET" and p.startswith("/store/")]
    api_gets = [h for m, p, h in fake.state.requests if m == "GET" and p.startswith("/api/v1/b")]
    assert len(store_gets) == 3 and len(api_gets) == 3
    assert all("Authorization" not in h for h in store_gets)
    assert all(h.get("Authorization") == "Bearer lrg_secret" for h in api_gets)


def test_pull_refuses_to_overwrite_a_folder_unless_forced(
    client: Client, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(Conflict):
        client.pull("acme/bot", dest)
    assert (dest / "mine.txt").read_text() == "keep"
    client.pull("acme/bot", dest, force=True)
    _same_tree(adapter_dir, dest)


def test_a_manifest_path_outside_the_folder_is_refused(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    v = fake.state.versions["acme/bot"]
    v["files"] = [dict(v["files"][0], path="../escape")]
    with pytest.raises(IntegrityError):
        client.pull("acme/bot", tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_bytes_that_do_not_match_their_digest_are_rejected(
    client: Client, fake: FakeRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    client.push(adapter_dir, "acme/bot")
    readme = sha256_digest(b"hello\n")
    fake.state.blobs[readme] = b"HELLO\n"
    with pytest.raises(IntegrityError):
        client.pull("acme/bot", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not client.cache.path(readme).exists()


def test_unknown_adapter_is_not_found(client: Client, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        client.pull("acme/nothing", tmp_path / "out")
    assert info.value.status == 404
    assert not (tmp_path / "out").exists()


def test_unreachable_registry_is_connection_failed(tmp_path: Path) -> None:
    with (
        Client("http://127.0.0.1:9", "t", home=tmp_path, retries=1, backoff=0.01) as c,
        pytest.raises(ConnectionFailed),
    ):
        c.whoami()
    assert not os.path.exists(tmp_path / "out")


def test_a_hostile_server_flooding_a_tiny_blob_gets_nowhere(
    client: Client, fake: FakeRegistry, tmp_path: Path
) -> None:
    """The registry declares a 5-byte blob and sends 300 MB: the client reads no further
    than the declared size, verifies, and keeps nothing it cannot use."""
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "adapter_config.json").write_bytes(b"hello")  # 5 bytes
    client.push(folder, "acme/tiny")
    fake.state.corrupt = True
    fake.state.flood = 300 * 1024 * 1024
    blobs = tmp_path / "home" / "cache" / "blobs"
    started = time.monotonic()
    with pytest.raises(IntegrityError) as err:
        client.pull("acme/tiny", tmp_path / "out")
    assert time.monotonic() - started < 10
    assert "more than the 5 bytes" in str(err.value)
    assert not (tmp_path / "out").exists()
    leftovers = [p for p in blobs.rglob("*") if p.is_file()]
    assert leftovers == []  # no partial file kept: nothing of it was usable
    assert fake.state.served_bytes < 100 * 1024 * 1024  # it stopped reading long before

    # right bytes followed by a flood: the 5 bytes verify; the rest is never read
    fake.state.corrupt = False
    fake.state.served_bytes = 0
    out = client.pull("acme/tiny", tmp_path / "out")
    assert (out.path / "adapter_config.json").read_bytes() == b"hello"
    assert out.downloaded_bytes == 5
    assert [p.stat().st_size for p in blobs.rglob("*") if p.is_file()] == [5]
