"""LFS uploads of the Hub protocol: a 200 MB file through the multipart transfer with the
real client (both backends), single PUTs, and signed URLs that cannot be bent."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from huggingface_hub import snapshot_download

from tests.factories.hub import hf_api, publishable, register_named_base, tree_digests
from tests.factories.pushes import Models
from tests.fixtures.api import RegistryServer, unique_name

BIG = 200 * 1000 * 1000
CHUNK = 64 * 1024 * 1024


@pytest.fixture
def registry_overrides() -> dict[str, Any]:
    """Multipart from 100 MB on, in 64 MiB parts (the defaults are 5 GiB and 512 MiB)."""
    return {"hub_multipart_threshold_bytes": 100 * 1000 * 1000, "hub_multipart_chunk_bytes": CHUNK}


def _big_file(path: Path) -> str:
    """200 MB of non-repeating bytes, written in 1 MiB steps; returns its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
        written = 0
        i = 0
        while written < BIG:
            data = bytes([i % 251]) + block[1:]
            data = data[: BIG - written]
            f.write(data)
            h.update(data)
            written += len(data)
            i += 1
    return h.hexdigest()


@pytest.mark.slow
def test_200_mb_file_through_the_lfs_multipart_path(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    folder = publishable(models.adapter.path, tmp_path / "out", base)
    sha = _big_file(folder / "optimizer.pt")
    api = hf_api(registry_server, alice.token)
    repo = f"{alice.name}/{unique_name('big')}"
    api.create_repo(repo)
    api.upload_folder(repo_id=repo, folder_path=folder)
    r = registry_server.admin.get(f"/adapters/{repo}/versions/1")
    assert r.status_code == 200, r.text
    files = {f["path"]: f for f in r.json()["files"]}
    assert files["optimizer.pt"] == {"path": "optimizer.pt", "digest": f"sha256:{sha}", "size": BIG}
    # the parts are gone once assembled
    staging = registry_server.settings.home / "hub-uploads"
    assert not staging.exists() or not any(staging.iterdir())
    back = snapshot_download(
        repo, endpoint=registry_server.base_url, token=alice.token, local_dir=tmp_path / "back"
    )
    assert tree_digests(Path(back)) == tree_digests(folder)


def _batch(
    server: RegistryServer, token: str, repo: str, oid: str, size: int, transfers: list[str]
) -> httpx.Response:
    return httpx.post(
        server.url(f"/{repo}.git/info/lfs/objects/batch"),
        json={
            "operation": "upload",
            "transfers": transfers,
            "objects": [{"oid": oid, "size": size}],
            "hash_algo": "sha256",
        },
        headers={"Authorization": f"Bearer {token}"},
    )


def _with(url: str, **changes: Any) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update({k: str(v) for k, v in changes.items()})
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def test_basic_upload_and_what_a_signed_url_refuses(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    repo = f"{alice.name}/{unique_name('x')}"
    data = b"some bytes for one object"
    oid = hashlib.sha256(data).hexdigest()
    r = _batch(registry_server, alice.token, repo, oid, len(data), ["basic", "multipart"])
    assert r.status_code == 200, r.text
    assert r.json()["transfer"] == "basic"
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    # altered size, forged signature, another object: refused, nothing stored
    for bad in (
        _with(href, size=len(data) + 1),
        _with(href, sig="0" * 64),
        href.replace(oid, hashlib.sha256(b"other").hexdigest()),
    ):
        assert httpx.put(bad, content=data).status_code in (400, 401), bad
    # wrong bytes: the digest check refuses them
    assert httpx.put(href, content=data[::-1]).status_code == 400
    assert httpx.put(href, content=data).status_code == 200
    again = _batch(registry_server, alice.token, repo, oid, len(data), ["basic"])
    assert "actions" not in again.json()["objects"][0]  # present now: nothing to upload
    verify = httpx.post(
        registry_server.url(f"/{repo}.git/info/lfs/objects/verify"),
        json={"oid": oid, "size": len(data)},
        headers=alice.headers,
    )
    assert verify.status_code == 200
    # a revoked token voids the URLs it was given
    other = hashlib.sha256(b"later").digest().hex()
    tok = registry_server.make_token(alice)
    href2 = _batch(registry_server, tok.token, repo, other, 5, ["basic"]).json()["objects"][0][
        "actions"
    ]["upload"]["href"]
    assert registry_server.client(alice.token).delete(f"/tokens/{tok.token_id}").status_code == 204
    assert httpx.put(href2, content=b"later").status_code == 401


def test_batch_needs_write_access(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    reader = registry_server.make_token(alice, scope="read")
    outsider = registry_server.make_user()
    oid = "0" * 64
    repo = f"{alice.name}/{unique_name('x')}"
    assert _batch(registry_server, reader.token, repo, oid, 1, ["basic"]).status_code == 403
    assert _batch(registry_server, outsider.token, repo, oid, 1, ["basic"]).status_code == 403
    anon = httpx.post(
        registry_server.url(f"/{repo}.git/info/lfs/objects/batch"),
        json={"operation": "upload", "objects": []},
    )
    assert anon.status_code == 401


def test_multipart_parts_must_fit(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    repo = f"{alice.name}/{unique_name('x')}"
    size = CHUNK + 10
    oid = hashlib.sha256(b"x").hexdigest()
    r = _batch(registry_server, alice.token, repo, oid, size, ["multipart"])
    action = r.json()["objects"][0]["actions"]["upload"]
    assert r.json()["transfer"] == "multipart" and action["header"]["chunk_size"] == str(CHUNK)
    part2 = action["header"]["00002"]
    assert httpx.put(part2, content=b"y" * 11).status_code == 400  # the last part is 10 bytes
    assert httpx.put(part2, content=b"y" * 10).status_code == 200
    # completing without part 1 names it; nothing is left behind
    done = httpx.post(
        action["href"],
        json={
            "oid": oid,
            "parts": [{"partNumber": 1, "etag": "x"}, {"partNumber": 2, "etag": "y"}],
        },
    )
    assert done.status_code == 400 and "part 1" in done.json()["error"]
    staging = registry_server.settings.home / "hub-uploads"
    assert not staging.exists() or not any(staging.iterdir())
