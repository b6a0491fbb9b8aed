"""Run the real ``loreg`` binaries as subprocesses: a server, workers, CLI commands.

``LoregEnv`` holds the environment every process of one registry shares (``LOREG_HOME`` and,
for the scaled-out variant, PostgreSQL + S3 settings). Nothing of the test runner's own
``LOREG_*`` environment leaks in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
LOREG = str(BIN / "loreg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def one_line_error(res: Result, *words: str) -> str:
    """The error a person sees: one line on stderr starting with 'error:' that says the given
    things, nothing on stdout, no traceback."""
    assert res.stdout == "", res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@dataclass
class LoregEnv:
    home: Path
    extra: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    port: int = 0

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
        env["LOREG_HOME"] = str(self.home)
        env.update(self.extra)
        env.update(overrides)
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(
        self,
        *args: str,
        check: bool | int = True,
        timeout: float = 180,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        exe: str = LOREG,
    ) -> Result:
        """Run ``loreg ARGS``; ``check=True`` wants exit 0, an int wants that exit code.
        ``exe``: another installation's ``loreg`` (the light client's)."""
        p = subprocess.run(
            [exe, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or self.env(),
            cwd=cwd,
        )
        res = Result(p.returncode, p.stdout, p.stderr)
        want = 0 if check is True else check
        if check is not False and p.returncode != want:
            raise AssertionError(
                f"loreg {' '.join(args)} exited {p.returncode}, wanted {want}\n"
                f"stdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}"
            )
        return res

    def json(self, *args: str, **kwargs: Any) -> Any:
        """``loreg ARGS --json``: stdout must be exactly one JSON document."""
        return self.run(*args, "--json", **kwargs).json

    def start_server(
        self, *, worker: bool = True, port: int | None = None
    ) -> subprocess.Popen[bytes]:
        self.port = port or self.port or free_port()
        args = [LOREG, "serve", "--port", str(self.port), "--json"]
        if not worker:
            args.append("--no-worker")
        log = open(self.home.parent / f"serve-{self.port}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=self.env())
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"loreg serve exited {proc.wait()}: see {log.name}")
        announced = json.loads(line)
        assert announced["url"] == self.url
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        return proc

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = open(self.home.parent / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [LOREG, "worker", "--device", "cpu"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.kill(proc, signal.SIGTERM)
        self.procs.clear()


class ThrottledProxy:
    """A TCP proxy on a loopback port that slows the server-to-client direction.

    Lets a test kill the real server while a download is provably halfway through.
    """

    def __init__(self, upstream_port: int, bytes_per_second: int) -> None:
        self.upstream_port = upstream_port
        self.rate = bytes_per_second
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.rate), daemon=True
            ).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, rate: int | None) -> None:
        chunk = 16 * 1024
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()
