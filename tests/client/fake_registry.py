"""A tiny real HTTP server speaking the blob half of the loreg wire protocol, for client tests.

It runs on a loopback port in a thread (real sockets, no mocks) and lets a test inject the
failures the client must survive: 5xx answers, connections cut halfway through a body, no
Range support, redirects to a second "store" origin (which records whether a token came along).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from loreg.digests import sha256_digest


@dataclass
class State:
    blobs: dict[str, bytes] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # "ns/name" -> version
    fail_5xx: int = 0  # answer the next N blob GETs with 503
    cut_after: int | None = None  # cut the next blob GET body after this many bytes
    cut_times: int = 0
    ranges: bool = True
    redirect_to: str | None = None  # base URL of the store server
    flood: int = 0  # a hostile server: append this many junk bytes to every blob GET body
    corrupt: bool = False  # a hostile server: serve junk instead of a blob's bytes
    served_bytes: int = 0
    uploaded_bytes: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _make_handler(state: State, *, store: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return None

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            self._json(status, {"error": {"code": code, "message": message, "details": None}})

        def _record(self) -> None:
            with state.lock:
                state.requests.append((self.command, self.path, dict(self.headers.items())))

        def do_POST(self) -> None:
            self._record()
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            path = urlparse(self.path).path
            if path == "/api/v1/uploads":
                missing = [d for d in body["digests"] if d not in state.blobs]
                return self._json(200, {"missing": missing})
            m = re.fullmatch(r"/api/v1/adapters/([^/]+)/([^/]+)/versions", path)
            if m:
                key = f"{m.group(1)}/{m.group(2)}"
                for f in body["files"]:
                    if f["digest"] not in state.blobs:
                        return self._error(400, "blob_missing", f"{f['digest']} not uploaded")
                prev = state.versions.get(key)
                if prev and prev["files"] == body["files"]:
                    return self._json(200, prev)
                number = (prev["number"] + 1) if prev else 1
                v = {
                    "namespace": m.group(1),
                    "name": m.group(2),
                    "number": number,
                    "digest": sha256_digest(json.dumps(body["files"]).encode()),
                    "files": body["files"],
                    "labels": body.get("labels", {}),
                }
                state.versions[key] = v
                return self._json(201, v)
            return self._error(404, "not_found", "no route")

        def do_PUT(self) -> None:
            self._record()
            m = re.fullmatch(r"/api/v1/blobs/(sha256:[0-9a-f]{64})", self.path)
            if not m:
                return self._error(404, "not_found", "no route")
            length = int(self.headers["Content-Length"])
            data = self.rfile.read(length)
            if sha256_digest(data) != m.group(1):
                return self._error(400, "digest_mismatch", "bytes do not match")
            with state.lock:
                state.blobs[m.group(1)] = data
                state.uploaded_bytes += len(data)
            return self._json(201, {"digest": m.group(1), "size": len(data)})

        def do_GET(self) -> None:
            self._record()
            url = urlparse(self.path)
            if not store and url.path == "/api/v1/resolve":
                ref = parse_qs(url.query)["ref"][0]
                key = ref.split(":")[0].split("@")[0]
                if key not in state.versions:
                    return self._error(404, "not_found", f"no adapter {key}")
                return self._json(200, state.versions[key])
            m = re.fullmatch(r"/api/v1/adapters/([^/]+)/([^/]+)/versions/(.+)", url.path)
            if not store and m:
                key = f"{m.group(1)}/{m.group(2)}"
                if key not in state.versions:
                    return self._error(404, "not_found", f"no adapter {key}")
                return self._json(200, state.versions[key])
            m = re.fullmatch(r"/(?:api/v1/blobs|store)/(sha256:[0-9a-f]{64})", url.path)
            if not m:
                return self._error(404, "not_found", "no route")
            digest = m.group(1)
            if not store and state.redirect_to:
                self.send_response(307)
                self.send_header("Location", f"{state.redirect_to}/store/{digest}?sig=x")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            with state.lock:
                if state.fail_5xx > 0:
                    state.fail_5xx -= 1
                    fail = True
                else:
                    fail = False
            if fail:
                return self._error(503, "unavailable", "try again")
            data = state.blobs.get(digest)
            if data is None:
                return self._error(404, "blob_not_found", "no blob")
            start = 0
            rng = self.headers.get("Range")
            if rng and state.ranges:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            if state.corrupt:
                body = b"\xff" * len(body)
            if state.flood:
                return self._flood(body)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with state.lock:
                cut = state.cut_after if state.cut_times > 0 else None
                if cut is not None and cut < len(body):
                    state.cut_times -= 1
                else:
                    cut = None
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                with state.lock:
                    state.served_bytes += cut
                self.close_connection = True
                import socket

                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            self.wfile.write(body)
            with state.lock:
                state.served_bytes += len(body)
            return None

        def _flood(self, body: bytes) -> None:
            """Send ``body`` and then ``state.flood`` junk bytes, declaring them all."""
            self.send_header("Content-Length", str(len(body) + state.flood))
            self.end_headers()
            junk = b"\xee" * (1024 * 1024)
            sent = 0
            try:
                self.wfile.write(body)
                sent = len(body)
                while sent < len(body) + state.flood:
                    piece = junk[: len(body) + state.flood - sent]
                    self.wfile.write(piece)
                    sent += len(piece)
            except OSError:  # the client hung up: what a well-behaved client does here
                self.close_connection = True
            finally:
                with state.lock:
                    state.served_bytes += sent

    return Handler


class FakeRegistry:
    """The registry and a separate store origin, each on its own loopback port."""

    def __init__(self) -> None:
        self.state = State()
        self.api = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self.state, store=False))
        self.store = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self.state, store=True))
        self.api.daemon_threads = True
        self.store.daemon_threads = True
        for srv in (self.api, self.store):
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api.server_address[1]}"

    @property
    def store_url(self) -> str:
        # "localhost" rather than 127.0.0.1: a different origin, as a presigned S3 URL is.
        return f"http://localhost:{self.store.server_address[1]}"

    def close(self) -> None:
        for srv in (self.api, self.store):
            srv.shutdown()
            srv.server_close()
