"""Chaos: the team topology as separate processes under faults, then a full audit.

PostgreSQL (a cluster of the test's own), moto's S3 server (its own process), the API
(``loreg serve --no-worker``) and two workers (``loreg worker``) run as processes. Merges
(slowed per tensor, so faults land mid-merge) and pushes (a client pushing all along) go on
while, in each round:

1. a worker is ``kill -9``-ed in the middle of a merge and started again on the same home
   (what a supervisor does);
2. PostgreSQL is stopped for 5 s while a merge runs (the API must answer 503 with
   ``Retry-After``, the workers must stay up and healthy);
3. the S3 server is frozen for 5 s (SIGSTOP, then SIGCONT) while a merge runs;
4. the API is ``kill -9``-ed during a push and started again.

Then: every job is terminal and succeeded; a killed merge took 2 attempts and every other
job 1 (outages cost no attempt); every merge's output is byte-identical to a clean merge of
the same inputs and downloads with verified digests; every push the client saw succeed pulls
back byte for byte; the bucket holds exactly the blobs the database records, no multipart
upload is pending, ``loreg gc --dry-run --grace-hours 0`` finds nothing to collect, no work
folder is left on any worker's home; every worker process is still alive and healthy.

The CI run does one round of each fault. ``CHAOS_SECONDS=300`` repeats rounds (with more
jobs and pushes) until that many seconds have passed. A summary line with the figures is
printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from loreg.client import Client
from loreg.db import Blob, Job, create_engine_for, make_sessionmaker
from loreg.merge.stream import merge_checkpoint
from loreg.worker.workdirs import sweep
from tests.factories import TinyAdapter, TinyModel, make_llama, make_lora_adapter
from tests.fixtures.postgres import PgCluster, free_port
from tests.fixtures.s3 import MotoServer

pytestmark = pytest.mark.slow

LOREG = [sys.executable, "-c", "from loreg.cli.main import main; main()"]
CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS") or 0)  # 0: one round of each fault
LEASE_SECONDS = 8
OUTAGE_SECONDS = 5.0
SHARD_BYTES = 20_000
MERGE_DELAY = 0.15  # seconds per merged tensor: a merge takes a few seconds
PUSH_INTERVAL = 2.0
TERMINAL = ("succeeded", "failed", "cancelled")


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Proc:
    """One supervised process: how to start it again, where it logs."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    health_url: str
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=out)
        self.starts += 1

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class Topology:
    root: Path
    cluster: PgCluster
    moto: MotoServer
    db_url: str = ""
    bucket: str = ""
    api: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    engine: Engine | None = None

    def __post_init__(self) -> None:
        self.db_url = self.cluster.create_database()
        self.bucket = self.moto.bucket().bucket
        self.engine = create_engine_for(self.db_url)

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
        env.update(
            {
                "LOREG_HOME": str(home),
                "LOREG_DATABASE_URL": self.db_url,
                "LOREG_STORAGE_URL": f"s3://{self.bucket}/loreg",
                "LOREG_S3_ENDPOINT_URL": self.moto.url,
                "LOREG_S3_REGION": "us-east-1",
                "LOREG_WORKER_DEVICE": "cpu",
                "LOREG_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
                **extra,
            }
        )
        return env

    def start_api(self) -> None:
        port = free_port()
        self.api = Proc(
            "api",
            [*LOREG, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
            self.env(self.root / "api"),
            self.root / "api.log",
            f"http://127.0.0.1:{port}/healthz",
        )
        self.api.start()

    def admin_token(self) -> str:
        """Once the API is up: the token its first start wrote for the admin."""
        assert self.api is not None
        _wait(self.api.healthy, 120, "the API to start")
        path = self.root / "api" / "credentials.json"  # written just after it listens
        _wait(lambda: path.is_file() and path.stat().st_size > 0, 30, "the admin token")
        return str(json.loads(path.read_text())["token"])

    def restart_api(self) -> None:
        assert self.api is not None
        self.api.start()
        _wait(self.api.healthy, 120, "the API to start again")

    @property
    def url(self) -> str:
        assert self.api is not None
        return self.api.health_url.removesuffix("/healthz")

    def start_worker(self, i: int) -> Proc:
        port = free_port()
        w = Proc(
            f"worker{i}",
            [*LOREG, "worker", "--device", "cpu"],
            self.env(
                self.root / f"worker{i}",
                LOREG_WORKER_HEALTH_PORT=str(port),
                LOREG_WORKER_POLL_SECONDS="0.2",
                LOREG_WORKER_BACKOFF_MAX_SECONDS="2",
                LOREG_WORKER_TEST_DELAY_SECONDS=str(MERGE_DELAY),
            ),
            self.root / f"worker{i}.log",
            f"http://127.0.0.1:{port}/healthz",
        )
        w.start()
        self.workers.append(w)
        return w

    def home_of(self, w: Proc) -> Path:
        return Path(w.env["LOREG_HOME"])

    def jobs(self) -> list[Job]:
        assert self.engine is not None
        with make_sessionmaker(self.engine)() as s:
            rows = list(s.scalars(select(Job).order_by(Job.created_at)))
            for job in rows:
                _ = list(job.artifacts)
            return rows

    def close(self) -> None:
        for p in [*self.workers, *([self.api] if self.api else [])]:
            p.stop()
        if self.engine is not None:
            self.engine.dispose()


class Pusher(threading.Thread):
    """Pushes adapters one after another, all along; retries a failed push until it goes
    through (so nothing half-pushed is left), and remembers what was reported pushed."""

    def __init__(self, url: str, token: str, home: Path, adapters: list[TinyAdapter]) -> None:
        super().__init__(name="pusher", daemon=True)
        self.client = Client(url, token, home=home)
        self.adapters = adapters
        self.in_push = threading.Event()
        self.stopping = threading.Event()
        self.reported: list[tuple[str, Path]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            adapter = self.adapters[i % len(self.adapters)]
            target = f"admin/chaos-{i}"
            while True:
                self.in_push.set()
                try:
                    out = self.client.push(adapter.path, target, base="org/tiny")
                except Exception as exc:  # the API was killed under it: push it again
                    self.failures.append(f"{target}: {type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.5)
                    continue
                finally:
                    self.in_push.clear()
                self.reported.append((out.version.ref, adapter.path))
                break
            i += 1
            # each push queues a validation job: a pace the two workers keep up with, so
            # the merges behind those jobs in the queue still get their turn
            self.stopping.wait(PUSH_INTERVAL)


@dataclass
class Chaos:
    topo: Topology
    client: Client
    base: TinyModel
    adapter: TinyAdapter
    tmp: Path
    weights: list[float] = field(default_factory=list)
    expected: dict[str, dict[str, str]] = field(default_factory=dict)  # job id -> outputs
    killed_jobs: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    outage_probes: list[dict[str, Any]] = field(default_factory=list)

    def submit_merge(self) -> str:
        w = round(0.05 * (len(self.weights) + 1), 2)
        self.weights.append(w)
        job = self.client.merge(
            ["admin/tiny-lora"], "org/tiny", weights=[w], max_shard_bytes=SHARD_BYTES
        )
        ref = merge_checkpoint(
            self.base.path,
            [(self.adapter.path, w)],
            self.tmp / f"ref-{w}",
            device="cpu",
            max_shard_bytes=SHARD_BYTES,
        )
        self.expected[job.id] = {
            f.path: "sha256:" + f.sha256.removeprefix("sha256:") for f in ref.files
        }
        return job.id

    def running_merge(self, min_progress: float) -> Job | None:
        for job in self.topo.jobs():
            if (
                job.type == "merge"
                and job.status == "running"
                and job.progress >= min_progress
                and job.lease_owner
            ):
                return job
        return None

    def merge_running(self, min_progress: float = 0.1) -> Job:
        """A merge in progress; submits one when none is queued or running."""
        if not any(
            j.type == "merge" and j.status in ("queued", "running") for j in self.topo.jobs()
        ):
            self.submit_merge()
        job: Job = _wait(lambda: self.running_merge(min_progress), 300, "a running merge")
        return job

    def count(self, fault: str) -> None:
        self.faults[fault] = self.faults.get(fault, 0) + 1

    # ------------------------------------------------------------------ faults

    def kill_worker_mid_merge(self) -> None:
        job = self.merge_running(0.3)
        pid = int(str(job.lease_owner).split(":")[1])
        (victim,) = [w for w in self.topo.workers if w.proc is not None and w.proc.pid == pid]
        victim.kill9()
        self.killed_jobs.append(job.id)
        self.count("worker_kill9")
        time.sleep(0.5)
        victim.start()  # the supervisor's restart, on the same home
        _wait(victim.healthy, 120, "the killed worker to start again")

    def stop_postgres(self) -> None:
        self.merge_running(0.1)
        assert self.topo.api is not None
        started = time.monotonic()
        self.topo.cluster.stop()
        probe: dict[str, Any] = {}
        r = httpx.get(
            self.topo.url + "/api/v1/whoami",
            headers={"Authorization": f"Bearer {self.client.http.token}"},
            timeout=30,
        )
        probe["api_status"] = r.status_code
        probe["retry_after"] = r.headers.get("retry-after")
        probe["workers_healthy"] = [w.healthy() for w in self.topo.workers]
        probe["workers_alive"] = [w.alive() for w in self.topo.workers]
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        probe["workers_alive_at_end"] = [w.alive() for w in self.topo.workers]
        self.topo.cluster.start()
        probe["seconds"] = round(time.monotonic() - started, 2)
        self.outage_probes.append(probe)
        self.count("postgres_stop")

    def pause_s3(self) -> None:
        self.merge_running(0.1)
        self.topo.moto.pause()
        try:
            time.sleep(OUTAGE_SECONDS)
        finally:
            self.topo.moto.resume()
        self.count("s3_pause")

    def kill_api_mid_push(self, pusher: Pusher) -> None:
        assert self.topo.api is not None
        assert pusher.in_push.wait(60), "no push started"
        time.sleep(random.uniform(0.0, 0.05))
        self.topo.api.kill9()
        self.count("api_kill9")
        time.sleep(0.5)
        self.topo.restart_api()


@pytest.fixture
def topology(tmp_path: Path, pg_cluster: PgCluster, moto_server: MotoServer) -> Iterator[Topology]:
    topo = Topology(tmp_path, pg_cluster, moto_server)
    try:
        yield topo
    finally:
        topo.close()


def test_chaos(topology: Topology, tmp_path: Path) -> None:
    t0 = time.monotonic()
    topo = topology
    topo.start_api()  # it starts while the test builds its models
    base = make_llama(tmp_path / "base", max_shard_size="20KB")
    adapter = make_lora_adapter(base, tmp_path / "adapter", r=4)
    n_push = 6 if CHAOS_SECONDS <= 0 else 12
    pushed = [
        make_lora_adapter(base, tmp_path / f"push{i}", r=4, seed=100 + i) for i in range(n_push)
    ]
    token = topo.admin_token()
    workers = [topo.start_worker(i) for i in range(2)]
    client = Client(topo.url, token, home=tmp_path / "client")
    client.register_base(base.path, "org/tiny")
    client.push(adapter.path, "admin/tiny-lora", base="org/tiny")
    _wait(lambda: all(w.healthy() for w in workers), 120, "the workers to start")

    chaos = Chaos(topo, client, base, adapter, tmp_path)
    phases = {"setup": round(time.monotonic() - t0, 1)}
    for _ in range(3):
        chaos.submit_merge()
    pusher = Pusher(topo.url, token, tmp_path / "pusher", pushed)
    pusher.start()
    rounds = 0
    try:
        while True:
            rounds += 1
            for name, fault in (
                ("worker_kill9", chaos.kill_worker_mid_merge),
                ("postgres_stop", chaos.stop_postgres),
                ("s3_pause", chaos.pause_s3),
                ("api_kill9", lambda: chaos.kill_api_mid_push(pusher)),
            ):
                started = time.monotonic()
                fault()
                phases[name] = round(phases.get(name, 0) + time.monotonic() - started, 1)
            if time.monotonic() - t0 >= CHAOS_SECONDS:
                break
            for _ in range(3):
                chaos.submit_merge()
    finally:
        pusher.stopping.set()
        pusher.join(180)
    assert not pusher.is_alive(), "the last push never went through"
    fault_seconds = time.monotonic() - t0

    def settled() -> bool:
        return all(j.status in TERMINAL for j in topo.jobs())

    started = time.monotonic()
    _wait(settled, 300, "every job to end")
    phases["drain"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    jobs = topo.jobs()
    logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)

    # every job ended well; only the merges whose worker was killed took a second attempt
    assert {j.status for j in jobs} == {"succeeded"}, (
        [(j.type, j.status, j.attempts, j.error) for j in jobs if j.status != "succeeded"],
        logs,
    )
    for job in jobs:
        want = 2 if job.id in chaos.killed_jobs else 1
        assert job.attempts == want, (job.id, job.type, job.attempts, job.error, logs)

    # outputs identical to a clean merge of the same inputs, and downloadable
    reader = Client(topo.url, token, home=tmp_path / "reader")
    merges = [j for j in jobs if j.type == "merge"]
    assert {j.id for j in merges} == set(chaos.expected)
    for job in merges:
        assert {a.path: a.blob_digest for a in job.artifacts} == chaos.expected[job.id]
        out = reader.download_job_outputs(job.id, tmp_path / "dl" / job.id)
        for a in job.artifacts:
            assert _sha256(out.path / a.path) == a.blob_digest

    # every push the client saw succeed pulls back byte for byte
    assert pusher.reported
    for ref, folder in pusher.reported:
        dest = tmp_path / "pulled" / ref.replace("/", "_").replace("@", "_")
        reader.pull(ref, dest)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            assert (dest / f.relative_to(folder)).read_bytes() == f.read_bytes(), (ref, f)

    # nothing orphaned: bucket == blob rows, no pending upload, nothing for GC, no folders
    s3 = topo.moto.bucket().client()
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=topo.bucket)
        for o in page.get("Contents", [])
    ]
    stored = {"sha256:" + k.rsplit("/", 1)[1] for k in keys}
    assert all(k.startswith("loreg/sha256/") for k in keys), keys
    assert topo.engine is not None
    with make_sessionmaker(topo.engine)() as s:
        rows = set(s.scalars(select(Blob.digest)))
        n_blobs = s.scalar(select(func.count()).select_from(Blob))
    assert stored == rows, (stored - rows, rows - stored)
    assert not s3.list_multipart_uploads(Bucket=topo.bucket).get("Uploads")
    gc = subprocess.run(
        [*LOREG, "gc", "--dry-run", "--grace-hours", "0", "--json"],
        env=topo.env(tmp_path / "api"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gc.returncode == 0, gc.stderr
    report = json.loads(gc.stdout)
    for key in (
        "blobs",
        "orphan_objects",
        "aborted_uploads",
        "expired_job_outputs",
        "work_folders",
    ):
        assert report[key] == [], (key, report[key])
    for w in workers:
        home = topo.home_of(w)
        assert sweep(home / "worker" / "work", dry_run=True, grace_seconds=0) == []
        assert list((home / "worker" / "work").iterdir()) == [], w.name
        assert not list((home / "worker" / "bases").glob(".*.tmp")), w.name

    # every worker still runs, healthy, and told the outage in its log
    for w in workers:
        assert w.alive(), (w.name, w.tail())
        health = httpx.get(w.health_url, timeout=5).json()
        assert health["status"] == "ok" and health["dependencies"] == {
            "database": "up",
            "store": "up",
        }, health
    for probe in chaos.outage_probes:
        assert probe["api_status"] == 503 and probe["retry_after"], probe
        assert all(probe["workers_alive"]) and all(probe["workers_alive_at_end"]), probe
        assert all(probe["workers_healthy"]), probe
    events = [e["event"] for w in workers for e in _events(w.log)]
    assert "worker.database_unavailable" in events and "worker.database_back" in events
    assert events.count("worker.work_folders_removed") >= chaos.faults["worker_kill9"]
    assert topo.api is not None and topo.api.alive()
    assert httpx.get(topo.url + "/readyz", timeout=10).status_code == 200

    phases["audit"] = round(time.monotonic() - started, 1)
    summary = {
        "chaos_seconds_setting": CHAOS_SECONDS,
        "rounds": rounds,
        "phase_seconds": phases,
        "fault_phase_seconds": round(fault_seconds, 1),
        "total_seconds": round(time.monotonic() - t0, 1),
        "faults": chaos.faults,
        "jobs": len(jobs),
        "merges": len(merges),
        "validations": sum(1 for j in jobs if j.type == "validate"),
        "max_attempts_seen": max(j.attempts for j in jobs),
        "pushes_reported": len(pusher.reported),
        "push_failures_retried": len(pusher.failures),
        "blobs": n_blobs,
        "outage_probes": chaos.outage_probes,
        "worker_starts": [w.starts for w in workers],
    }
    print("chaos summary: " + json.dumps(summary))
