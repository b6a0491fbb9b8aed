"""Request body limits: oversized bodies are refused from their Content-Length, or while
they stream, before authentication and before parsing, with a 413 at once.

The requests are written on raw sockets: an HTTP client library would not let a test send a
300 MB body and read the answer while still sending.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.cli.harness import LoregEnv
from tests.fixtures.api import RegistryServer

MB = 1024 * 1024


@dataclass
class Answer:
    status: int
    seconds: float  # from the end of the request head to the answer's head
    head: bytes
    body: bytes
    sent: int  # body bytes the server let us send before we stopped


def raw_request(
    base_url: str,
    method: str,
    path: str,
    *,
    body_bytes: int,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> Answer:
    """Send a request head, then stream ``body_bytes`` of body (``Content-Length`` unless
    ``chunked``) from a thread while waiting for the answer."""
    parts = urlsplit(base_url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {body_bytes}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    started = time.monotonic()
    stop = threading.Event()
    sent = [0]

    def pump() -> None:
        chunk = b"[" + b" " * (256 * 1024 - 1)
        try:
            while sent[0] < body_bytes and not stop.is_set():
                piece = chunk[: body_bytes - sent[0]]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent[0] += len(piece)
            if chunked and not stop.is_set():
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
        seconds = time.monotonic() - started
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            got = sock.recv(65536)
            if not got:
                break
            rest += got
    finally:
        stop.set()
        sock.close()
        thread.join(10)
    return Answer(int(head.split(b" ")[1]), seconds, head, rest, sent[0])


def _error(answer: Answer) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(answer.body)["error"]
    return doc


def test_huge_anonymous_json_body_is_refused_at_once(registry_server: RegistryServer) -> None:
    answer = raw_request(
        registry_server.base_url, "POST", "/api/v1/adapters/a/b/versions", body_bytes=300 * MB
    )
    assert answer.status == 413, answer.head
    assert answer.seconds < 1, answer.seconds
    assert answer.sent < 300 * MB
    error = _error(answer)
    assert error["code"] == "too_large"
    assert error["details"] == {
        "limit": registry_server.settings.max_json_bytes,
        "content_length": 300 * MB,
    }
    assert b"x-request-id" in answer.head.lower()


def test_chunked_body_is_cut_off_as_it_crosses_the_limit(registry_server: RegistryServer) -> None:
    limit = registry_server.settings.max_json_bytes
    answer = raw_request(
        registry_server.base_url, "POST", "/api/v1/uploads", body_bytes=300 * MB, chunked=True
    )
    assert answer.status == 413, answer.head
    assert answer.seconds < 5, answer.seconds
    assert _error(answer)["details"] == {"limit": limit}
    # the limit holds with a token too (JSON routes), and under it bodies are parsed as usual
    token = {"Authorization": f"Bearer {registry_server.admin_token}"}
    over = raw_request(
        registry_server.base_url, "POST", "/api/v1/uploads", body_bytes=limit + 1, headers=token
    )
    assert over.status == 413
    admin = registry_server.admin
    assert admin.post("/uploads", json={"digests": []}).status_code == 200


def test_large_body_routes_need_a_token(registry_server: RegistryServer) -> None:
    """Base registration may carry a large manifest, but only with a token; anonymous
    callers get the JSON limit (and blob uploads likewise)."""
    big = 2 * registry_server.settings.max_json_bytes
    anonymous = raw_request(registry_server.base_url, "POST", "/api/v1/bases", body_bytes=big)
    assert anonymous.status == 413
    bad_token = {"Authorization": "Bearer lrg_not-a-real-token"}
    with_token = raw_request(
        registry_server.base_url, "POST", "/api/v1/bases", body_bytes=big, headers=bad_token
    )
    assert with_token.status in (400, 401), with_token.head  # read, then refused as usual
    blob = "/api/v1/blobs/sha256:" + "0" * 64
    assert raw_request(registry_server.base_url, "PUT", blob, body_bytes=big).status == 413


def test_signed_upload_urls_take_large_bodies_after_checking_the_signature(
    registry_server: RegistryServer,
) -> None:
    """The Hub protocol's LFS uploads go to signed URLs without a token: the signature lifts
    the JSON limit, and a forged one is refused before the body is read."""
    big = 64 * MB
    path = "/api/lfs/objects/" + "0" * 64
    unsigned = raw_request(registry_server.base_url, "PUT", f"{path}?size={big}", body_bytes=big)
    assert unsigned.status == 413
    forged = raw_request(
        registry_server.base_url,
        "PUT",
        f"{path}?size={big}&tid=1&exp=9999999999&chunk=0&sig=" + "0" * 64,
        body_bytes=big,
    )
    assert forged.status in (400, 401, 403), forged.head
    assert forged.seconds < 5 and forged.sent < big  # answered without reading it all


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.mark.slow
def test_300mb_anonymous_body_costs_the_server_no_memory(tmp_path: Path) -> None:
    """Against a real ``loreg serve`` process: a 413 within a second, and the server's peak
    memory grows by less than 50 MB while a client pushes 300 MB at it."""
    env = LoregEnv(home=tmp_path / "home")
    proc = env.start_server(worker=False)
    try:
        before = _rss_kib(proc.pid, "VmRSS")
        for chunked in (False, True):
            answer = raw_request(
                env.url, "POST", "/api/v1/orgs", body_bytes=300 * MB, chunked=chunked
            )
            assert answer.status == 413, answer.head
            assert answer.seconds < 1, (chunked, answer.seconds)
        peak = _rss_kib(proc.pid, "VmHWM")
        assert (peak - before) * 1024 < 50 * MB, (before, peak)
    finally:
        env.stop_all()
