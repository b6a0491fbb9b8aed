"""``loreg serve`` through the real binary: where it cannot listen, it says so and exits 1;
``--workers N`` runs N API processes on PostgreSQL (and refuses SQLite)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from loreg.db import create_engine_for
from loreg.db.ops import WorkerHeartbeat
from tests.cli.harness import LOREG, LoregEnv, free_port


def test_a_busy_port_is_exit_1_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = LoregEnv(home=tmp_path / "home")
        res = env.run("serve", "--port", str(port), check=1, timeout=60)
        assert res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith(f"error: port {port} on 127.0.0.1 is already in use")
        assert "--port N" in lines[0] and "LOREG_URL=http://127.0.0.1:N" in lines[0]
        doc = env.json("serve", "--port", str(port), check=1, timeout=60)
        assert doc["error"]["code"] == "cannot_listen"
    # nothing was set up for a server that never ran
    assert not (tmp_path / "home" / "credentials.json").exists()


def test_an_address_not_on_this_machine(tmp_path: Path) -> None:
    env = LoregEnv(home=tmp_path / "home")
    res = env.run("serve", "--host", "192.0.2.1", "--port", "0", check=1, timeout=60)
    assert "cannot listen on 192.0.2.1:0" in res.stderr and "--host 127.0.0.1" in res.stderr


def test_several_processes_need_postgresql(tmp_path: Path) -> None:
    env = LoregEnv(home=tmp_path / "home")
    res = env.run("serve", "--workers", "2", "--port", "0", check=2, timeout=60)
    assert "--workers 2 needs PostgreSQL" in res.stderr and "LOREG_DATABASE_URL" in res.stderr
    assert not (tmp_path / "home" / "credentials.json").exists()


def _children(pid: int) -> list[str]:
    """Command lines of the live child processes of ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_workers_share_the_port_and_the_job_worker_runs_once(
    tmp_path: Path, postgres_url: str
) -> None:
    env = LoregEnv(home=tmp_path / "home", extra={"LOREG_DATABASE_URL": postgres_url})
    env.port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [LOREG, "serve", "--workers", "2", "--port", str(env.port), "--json"],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env.env(),
    )
    try:
        assert proc.stdout is not None
        announced = json.loads(proc.stdout.readline() or b"null")
        assert announced and announced["workers"] == 2 and announced["worker"] is True
        token = json.loads((tmp_path / "home" / "credentials.json").read_text())["token"]
        servers = [c for c in _children(proc.pid) if "multiprocessing.spawn" in c]
        assert len(servers) == 2, _children(proc.pid)
        with httpx.Client(
            base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            for _ in range(20):  # every answer right, whichever process takes it
                assert client.get("/api/v1/whoami").json()["user"] == "admin"
            assert client.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
            assert client.get("/api/v1/orgs/acme").status_code == 200
        engine = create_engine_for(postgres_url)
        try:
            deadline = time.monotonic() + 60
            beats = 0
            while beats == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
                with engine.connect() as conn:
                    beats = conn.execute(
                        select(func.count()).select_from(WorkerHeartbeat)
                    ).scalar_one()
            time.sleep(3)
            with engine.connect() as conn:
                workers = conn.execute(select(WorkerHeartbeat.worker_id)).scalars().all()
        finally:
            engine.dispose()
        assert len(workers) == 1, workers  # the supervisor's, not one per API process
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log.close()
    assert not [c for c in _children(proc.pid) if "multiprocessing.spawn" in c]
