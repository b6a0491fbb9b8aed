"""``loreg gc`` after a crash: a ``loreg serve`` killed with SIGKILL in the middle of a
blob upload leaves its partial upload behind (a temp file in a local store, a multipart
upload on S3); ``loreg gc --dry-run`` reports it, GC removes it, and a restarted server
removes local temp files at start-up. An upload in flight is never touched."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loreg.storage.local import TEMP_MIN_AGE_SECONDS
from tests.cli.harness import LoregEnv

pytestmark = pytest.mark.slow

MB = 1024 * 1024


class SlowUpload:
    """A ``PUT /blobs/<digest>`` on a raw socket, sent in parts at the test's pace."""

    def __init__(self, env: LoregEnv, data: bytes) -> None:
        token = json.loads((env.home / "credentials.json").read_text())["token"]
        self.data = data
        self.digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.sent = 0
        self.sock = socket.create_connection(("127.0.0.1", env.port), timeout=60)
        self.sock.sendall(
            (
                f"PUT /api/v1/blobs/{self.digest} HTTP/1.1\r\nHost: 127.0.0.1:{env.port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
        )

    def send(self, n: int) -> None:
        self.sock.sendall(self.data[self.sent : self.sent + n])
        self.sent += n

    def finish(self) -> int:
        """Send the rest; the answer's status."""
        self.send(len(self.data) - self.sent)
        answer = b""
        while b"\r\n" not in answer:
            answer += self.sock.recv(4096)
        self.sock.close()
        return int(answer.split(b" ")[1])


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _temp_files(env: LoregEnv) -> list[Path]:
    return sorted((env.home / "blobs" / "tmp").glob("put-*.tmp"))


def test_killed_server_leaves_a_temp_file_that_start_up_and_gc_remove(
    tmp_path: Path,
) -> None:
    env = LoregEnv(home=tmp_path / "home")
    env.start_server(worker=False)
    try:
        upload = SlowUpload(env, os.urandom(24 * MB))
        upload.send(12 * MB)
        _wait_for(
            lambda: any(p.stat().st_size >= 8 * MB for p in _temp_files(env)),
            "the upload's temp file",
        )
        env.kill(env.procs[0])  # SIGKILL, mid-upload
        [left] = _temp_files(env)
        # a temp file younger than this may belong to a put between creating and locking it
        _wait_for(
            lambda: time.time() - left.stat().st_mtime > TEMP_MIN_AGE_SECONDS,
            "the temp file to be old enough to tell it from a starting upload",
        )

        # the default grace period (24 h) protects it; with none, gc reports it, and a dry
        # run leaves it where it is
        assert env.json("gc", "--dry-run")["temp_files"] == []
        dry = env.json("gc", "--dry-run", "--grace-hours", "0")
        assert [t["name"] for t in dry["temp_files"]] == [left.name]
        assert dry["temp_files"][0]["size"] == left.stat().st_size
        human = env.run("gc", "--dry-run", "--grace-hours", "0").stdout
        assert f"would delete upload temp file {left.name}" in human
        assert left.exists()

        env.procs.clear()
        env.start_server(worker=False)  # start-up removes it, whatever its age
        assert _temp_files(env) == []

        # an upload in flight holds its temp file: gc leaves it, and the upload completes
        live = SlowUpload(env, os.urandom(3 * MB))
        live.send(MB)
        _wait_for(lambda: bool(_temp_files(env)), "the live upload's temp file")
        assert env.json("gc", "--grace-hours", "0")["temp_files"] == []
        assert len(_temp_files(env)) == 1
        assert live.finish() == 201
        assert _temp_files(env) == []
    finally:
        env.stop_all()


def test_killed_server_leaves_a_multipart_upload_that_gc_aborts(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pg = request.getfixturevalue("postgres_url")
    s3 = request.getfixturevalue("s3_bucket")
    env = LoregEnv(
        home=tmp_path / "home",
        extra={
            "LOREG_DATABASE_URL": pg,
            "LOREG_STORAGE_URL": f"s3://{s3.bucket}/loreg",
            "LOREG_S3_ENDPOINT_URL": s3.endpoint_url,
            "LOREG_S3_REGION": "us-east-1",
        },
    )
    env.start_server(worker=False)
    raw = s3.client()

    def pending() -> list[dict[str, str]]:
        return list(raw.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []))

    try:
        upload = SlowUpload(env, os.urandom(24 * MB))  # 8 MiB parts: a multipart upload
        upload.send(12 * MB)
        _wait_for(lambda: bool(pending()), "the multipart upload")
        env.kill(env.procs[0])
        [left] = pending()
        assert left["Key"].endswith(upload.digest.removeprefix("sha256:"))

        dry = env.json("gc", "--dry-run", "--grace-hours", "0")
        assert [u["key"] for u in dry["aborted_uploads"]] == [left["Key"]]
        assert dry["temp_files"] == []
        assert len(pending()) == 1
        done = env.json("gc", "--grace-hours", "0")
        assert [u["key"] for u in done["aborted_uploads"]] == [left["Key"]]
        assert pending() == []
    finally:
        env.stop_all()
