"""Blob uploads and downloads over HTTP: verified streaming, limits, truncation, Range."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.api import RegistryServer

LIMIT = 256 * 1024


@pytest.fixture
def registry_overrides() -> dict[str, Any]:
    return {"max_blob_bytes": LIMIT}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def missing(client: httpx.Client, d: str) -> bool:
    r = client.post("/uploads", json={"digests": [d]})
    assert r.status_code == 200, r.text
    return r.json()["missing"] == [d]


def stored(server: RegistryServer, d: str) -> bool:
    store = server.app.state.store
    return bool(store.exists(d))


def test_upload_verifies_and_is_idempotent(registry_server: RegistryServer) -> None:
    client = registry_server.client(registry_server.make_user().token)
    data = os.urandom(100_000)
    d = digest(data)
    assert missing(client, d)
    r = client.put(f"/blobs/{d}", content=data)
    assert r.status_code == 201, r.text
    assert r.json() == {"digest": d, "size": len(data)}
    assert not missing(client, d) and stored(registry_server, d)
    # the same bytes again: fine, 200
    assert client.put(f"/blobs/{d}", content=data).status_code == 200
    # duplicates in the check are answered once
    other = digest(b"other")
    r = client.post("/uploads", json={"digests": [other, d, other]})
    assert r.json()["missing"] == [other]


def test_mismatch_is_400_and_leaves_nothing(registry_server: RegistryServer) -> None:
    client = registry_server.client(registry_server.make_user().token)
    data = os.urandom(50_000)
    d = digest(data + b"x")
    r = client.put(f"/blobs/{d}", content=data)
    assert r.status_code == 400 and r.json()["error"]["code"] == "digest_mismatch", r.text
    assert missing(client, d) and not stored(registry_server, d)


def test_chunked_upload_without_length(registry_server: RegistryServer) -> None:
    client = registry_server.client(registry_server.make_user().token)
    data = os.urandom(200_000)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 7_000):
            yield data[i : i + 7_000]

    r = client.put(f"/blobs/{digest(data)}", content=chunks())
    assert r.status_code == 201, r.text


def test_size_limits(registry_server: RegistryServer) -> None:
    client = registry_server.client(registry_server.make_user().token)
    big = os.urandom(LIMIT + 1)
    d = digest(big)
    # Content-Length says so: refused before reading
    r = client.put(f"/blobs/{d}", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", r.text

    # no Content-Length (chunked): refused while reading
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 32_768):
            yield big[i : i + 32_768]

    r = client.put(f"/blobs/{d}", content=chunks())
    assert r.status_code == 413, r.text
    assert missing(client, d) and not stored(registry_server, d)
    # exactly at the limit is fine
    ok = os.urandom(LIMIT)
    assert client.put(f"/blobs/{digest(ok)}", content=ok).status_code == 201


def _raw_put(server: RegistryServer, token: str, d: str, claimed: int, body: bytes) -> bytes:
    """Send headers claiming ``claimed`` bytes, then ``body``, then close our side."""
    url = urlsplit(server.api_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        head = (
            f"PUT {url.path}/blobs/{d} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {claimed}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def test_truncated_upload_leaves_nothing(registry_server: RegistryServer) -> None:
    user = registry_server.make_user()
    client = registry_server.client(user.token)
    data = os.urandom(100_000)
    d = digest(data)
    answer = _raw_put(registry_server, user.token, d, len(data), data[:60_000])
    assert not answer.startswith(b"HTTP/1.1 2"), answer[:200]
    assert missing(client, d) and not stored(registry_server, d)
    # and the full upload still works afterwards
    assert client.put(f"/blobs/{d}", content=data).status_code == 201


def test_upload_needs_a_write_token(registry_server: RegistryServer) -> None:
    data = b"hello"
    d = digest(data)
    anon = registry_server.client(None)
    assert anon.put(f"/blobs/{d}", content=data).status_code == 401
    assert anon.post("/uploads", json={"digests": [d]}).status_code == 401
    reader = registry_server.client(registry_server.make_user(scope="read").token)
    assert reader.put(f"/blobs/{d}", content=data).status_code == 403
    assert reader.post("/uploads", json={"digests": [d]}).status_code == 403
    assert not stored(registry_server, d)


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:abc",
        "md5:" + "a" * 32,
        "sha256:" + "A" * 64,
        "..%2F..%2Fetc",
        "sha256:" + "a" * 64 + "x",
    ],
)
def test_bad_digests(registry_server: RegistryServer, bad: str) -> None:
    client = registry_server.client(registry_server.make_user().token)
    r = client.put(f"/blobs/{bad}", content=b"x")
    assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
    assert client.post("/uploads", json={"digests": [bad]}).status_code == 400
    assert client.get(f"/blobs/{bad}").status_code in (400, 404)


def test_download_and_ranges(registry_server: RegistryServer) -> None:
    """Admins may read any blob: stream with Range locally, 307 to a presigned URL on S3."""
    api = registry_server.admin
    data = os.urandom(10_000)
    d = digest(data)
    assert api.put(f"/blobs/{d}", content=data).status_code == 201
    head = api.head(f"/blobs/{d}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    r = api.get(f"/blobs/{d}")
    if registry_server.backend == "postgres+s3":
        assert r.status_code == 307
        url = r.headers["location"]
        assert httpx.get(url).content == data
        ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == data[10:20]
        return
    assert r.status_code == 200 and r.content == data
    r = api.get(f"/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = api.get(f"/blobs/{d}", headers={"Range": "bytes=9990-"})
    assert r.status_code == 206 and r.content == data[9990:]
    r = api.get(f"/blobs/{d}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = api.get(f"/blobs/{d}", headers={"Range": "bytes=5-999999"})
    assert r.status_code == 206 and r.content == data[5:]
    r = api.get(f"/blobs/{d}", headers={"Range": "bytes=20000-"})
    assert r.status_code == 416 and r.json()["error"]["code"] == "range_not_satisfiable"
    assert r.headers["content-range"] == f"bytes */{len(data)}"
    # unparseable ranges are ignored (RFC 9110): the whole blob
    r = api.get(f"/blobs/{d}", headers={"Range": "bytes=a-b"})
    assert r.status_code == 200 and r.content == data


def test_unreferenced_blob_is_readable_only_by_its_uploader(
    registry_server: RegistryServer,
) -> None:
    """The upload proved possession; to anyone else the blob does not exist."""
    user = registry_server.make_user()
    other = registry_server.make_user()
    client = registry_server.client(user.token)
    data = os.urandom(1000)
    d = digest(data)
    assert client.put(f"/blobs/{d}", content=data).status_code == 201
    assert client.head(f"/blobs/{d}").status_code == 200
    stranger = registry_server.client(other.token)

    def answer(dig: str) -> tuple[int, str]:
        r = stranger.get(f"/blobs/{dig}")
        return r.status_code, r.text.replace(dig, "<digest>")

    assert answer(d) == answer(digest(b"never"))
    assert answer(d)[0] == 404 and '"blob_not_found"' in answer(d)[1]
