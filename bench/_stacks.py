"""Servers the API benchmark starts and stops: loreg (embedded or on PostgreSQL), a bare
FastAPI app serving a fixed body, MLflow's tracking server, and a throwaway PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the server for {url} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.2)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOREG_", "HF_"))}


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    token: str = ""
    log: Path | None = None


@contextmanager
def loreg_server(
    home: Path, *, database_url: str | None = None, workers: int = 1, worker: bool = False
) -> Iterator[Server]:
    """``loreg serve`` as a process on a free port; yields its URL and the admin token."""
    env = clean_env()
    env["LOREG_HOME"] = str(home)
    if database_url:
        env["LOREG_DATABASE_URL"] = database_url
    port = free_port()
    cmd = [str(BIN / "loreg"), "serve", "--port", str(port)]
    if not worker:
        cmd.append("--no-worker")
    if workers > 1:
        cmd += ["--workers", str(workers)]
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc=proc)
        creds = home / "credentials.json"
        deadline = time.monotonic() + 60
        while not creds.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no credentials under {home}; see {log}")
            time.sleep(0.1)
        token = json.loads(creds.read_text())["token"]
        yield Server(url, port, proc, token, log)
    finally:
        stop(proc)


BARE_APP = """
import json, sys
from fastapi import FastAPI
VERSION = json.load(open(sys.argv[1]))
SEARCH = json.load(open(sys.argv[2]))
app = FastAPI()

@app.get("/api/v1/adapters/{namespace}/{name}/versions/{ref}")
def version(namespace: str, name: str, ref: str) -> dict:
    return VERSION

@app.get("/api/v1/adapters")
def search(limit: int = 20) -> dict:
    return SEARCH

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning",
                access_log=False)
"""


@contextmanager
def bare_server(tmp: Path, version_body: bytes, search_body: bytes) -> Iterator[Server]:
    """A FastAPI app with two sync routes returning loreg's own JSON bodies (parsed once
    at start-up), served by uvicorn exactly as loreg is: the framework's floor."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "bare_app.py").write_text(BARE_APP)
    (tmp / "version.json").write_bytes(version_body)
    (tmp / "search.json").write_bytes(search_body)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(tmp / "bare_app.py"),
            str(tmp / "version.json"),
            str(tmp / "search.json"),
            str(port),
        ],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/api/v1/adapters", proc=proc)
        yield Server(url, port, proc)
    finally:
        stop(proc)


MLFLOW_VENV = ROOT / "bench" / ".venv-mlflow"


def mlflow_python() -> Path | None:
    """The MLflow venv's interpreter, creating the venv (``pip install mlflow``) on first
    use; ``None`` (with the reason printed) when it cannot be installed."""
    python = MLFLOW_VENV / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([str(python), "-c", "import mlflow"], capture_output=True).returncode
        == 0
    ):
        return python
    print(f"installing MLflow into {MLFLOW_VENV} (once; not a loreg dependency) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"MLflow could not be installed ({exc}); its rows are left out")
        return None
    return python


@contextmanager
def mlflow_server(tmp: Path, python: Path) -> Iterator[Server]:
    """``mlflow server --workers 1`` on a SQLite file (its embedded default)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = clean_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp / "mlflow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(python.parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{tmp / 'mlflow.db'}",
                "--default-artifact-root",
                str(tmp / "artifacts"),
            ],
            stdout=out,
            stderr=out,
            env=env,
            cwd=tmp,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", timeout=300, proc=proc)
        yield Server(url, port, proc, log=log)
    finally:
        stop(proc)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    raise RuntimeError(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")


def _as_cluster_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres(shared_buffers: str = "512MB") -> Iterator[str]:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port; yields a URL to a
    fresh database in it. The cluster is removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="loreg-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_cluster_user(
            [
                _pg_bin("initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "loreg",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
        f"-c shared_buffers={shared_buffers} -c maintenance_work_mem=256MB "
        "-c max_wal_size=4GB -c checkpoint_timeout=30min"
    )
    ctl = [_pg_bin("pg_ctl"), "-D", str(root / "data")]
    subprocess.run(
        _as_cluster_user([*ctl, "-o", opts, "-l", str(root / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        import psycopg

        with psycopg.connect(
            f"postgresql://loreg@127.0.0.1:{port}/postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE bench")
        yield f"postgresql+psycopg://loreg@127.0.0.1:{port}/bench"
    finally:
        subprocess.run(_as_cluster_user([*ctl, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
