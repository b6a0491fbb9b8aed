"""Separate ``loreg worker`` processes on PostgreSQL + S3.

- over HTTP: register a base with its files, push a real PEFT adapter, submit a merge, watch
  it go queued -> running -> succeeded with rising progress, download the output and compare
  it with PEFT's ``merge_and_unload()``;
- crash safety: ``kill -9`` a worker mid-merge; another takes the job over after the lease
  expires, the job shows 2 attempts and only the second attempt's (complete) output;
- two workers on ten jobs: every job runs exactly once;
- the work folder a killed attempt leaves behind: ``loreg gc --dry-run`` lists it, the next
  worker on that home removes it at start-up;
- a database outage mid-merge: PostgreSQL stopped for 5 s while a worker merges; the worker
  stays up, the job succeeds with the output of a clean merge.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loreg.client import Client
from loreg.merge.stream import merge_checkpoint
from tests.factories.worker_stack import (
    Models,
    OutageStack,
    Stack,
    assert_matches_peft,
    sha256_file,
)
from tests.fixtures.api import settings_for, start_registry

pytestmark = pytest.mark.slow


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_merge_over_http_with_separate_worker(
    tmp_path: Path, models: Models, request: pytest.FixtureRequest
) -> None:
    settings = settings_for("postgres+s3", tmp_path / "server", request, job_lease_seconds=5)
    with start_registry(settings) as server:
        client = Client(server.base_url, server.admin_token, home=tmp_path / "client")
        client.register_base(models.base.path, "org/tiny")
        client.push(models.adapter.path, "admin/tiny-lora", base="org/tiny")
        job = client.merge(["admin/tiny-lora"], "org/tiny", max_shard_bytes=1 << 20)
        assert job.status == "queued"
        # the same merge again is the same job
        assert client.merge(["admin/tiny-lora@1"], "org/tiny", max_shard_bytes=1 << 20).id == job.id

        stack_env = Stack(settings, None, None, None, None)  # type: ignore[arg-type]
        log = tmp_path / "worker.log"
        proc = stack_env.spawn_worker(
            tmp_path / "worker-home", log=log, worker_test_delay_seconds=0.1
        )
        seen: list[tuple[str, float]] = []
        try:
            deadline = time.monotonic() + 120
            while True:
                j = client.get_job(job.id)
                seen.append((j.status, j.progress))
                if j.done:
                    break
                assert time.monotonic() < deadline, seen[-5:]
                time.sleep(0.05)
        finally:
            _stop(proc)
        assert j.status == "succeeded", (j.error, log.read_text()[-3000:])
        statuses = [s for s, _ in seen]
        assert statuses[0] == "queued" and "running" in statuses
        running = [p for s, p in seen if s == "running"]
        assert running == sorted(running) and len(set(running)) >= 3, running
        assert j.attempts == 1 and j.progress == 1.0

        out = tmp_path / "merged"
        client.download_job_outputs(job.id, out)
        assert_matches_peft(out, models)
        manifest = client.job_outputs(job.id)
        assert {f.path for f in manifest.files} == {p.name for p in out.iterdir()}

        # the worker logged structured lines naming the job
        events = _events(log)
        assert any(e["event"] == "job.succeeded" and e.get("job_id") == job.id for e in events)
        # the push's validation job ran too and marked the version valid
        version = client.get_version("admin/tiny-lora@1")
        assert version.validation_state == "valid", version.validation_report


def test_kill_9_mid_merge_then_another_worker_finishes(
    pg_stack: Stack, models: Models, tmp_path: Path
) -> None:
    stack = pg_stack
    stack.register_base(models.base.path, "org/tiny")
    stack.push(models.adapter.path, "admin", "tiny-lora", "org/tiny")
    job_id = stack.submit(
        "merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"], "max_shard_bytes": 20_000}
    )
    slow = {"worker_test_delay_seconds": 0.25, "job_lease_seconds": 2}
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = stack.spawn_worker(tmp_path / "home-a", log=log_a, **slow)
    try:
        job = stack.wait(
            job_id,
            lambda j: j.type == "merge" and j.status == "running" and j.progress > 0.3,
            timeout=120,
        )
        owner = job.lease_owner
        assert owner is not None and str(a.pid) in owner
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
    finally:
        _stop(a)
    assert stack.job(job_id).status == "running"  # nobody knows yet
    b = stack.spawn_worker(
        tmp_path / "home-b", log=log_b, worker_test_delay_seconds=0, job_lease_seconds=2
    )
    try:
        job = stack.wait(job_id, lambda j: j.status in ("succeeded", "failed"), timeout=120)
    finally:
        _stop(b)
    assert job.status == "succeeded", (job.error, log_b.read_text()[-3000:])
    assert job.attempts == 2
    assert job.lease_owner is None and str(b.pid) in (job.result or {}).get("worker", "")
    assert any(e["event"] == "job.lease_expired" and e["job_id"] == job_id for e in _events(log_b))

    # exactly the files of a complete merge, byte for byte, and nothing else
    ref = merge_checkpoint(
        models.base.path,
        [(models.adapter.path, 1.0)],
        tmp_path / "ref",
        device="cpu",
        max_shard_bytes=20_000,
    )
    want = {f.path: "sha256:" + f.sha256.removeprefix("sha256:") for f in ref.files}
    got = {a.path: a.blob_digest for a in job.artifacts}
    assert got == want
    for art in job.artifacts:
        assert (
            sha256_file(stack.download_outputs(job_id, tmp_path / "dl") / art.path)
            == art.blob_digest
        )


def test_two_workers_ten_jobs_each_once(pg_stack: Stack, models: Models, tmp_path: Path) -> None:
    stack = pg_stack
    stack.register_base(models.base.path, "org/tiny")
    stack.push(models.adapter.path, "admin", "tiny-lora", "org/tiny")
    ids = [
        stack.submit(
            "merge",
            {"base": "org/tiny", "adapters": [{"ref": "admin/tiny-lora", "weight": w / 10}]},
        )
        for w in range(1, 11)
    ]
    assert len(set(ids)) == 10
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    procs = [
        stack.spawn_worker(
            tmp_path / f"home{i}", "--once", log=logs[i], worker_test_delay_seconds=0.05
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(300) == 0
    starts: dict[str, list[str]] = {}
    for i, log in enumerate(logs):
        for e in _events(log):
            if e["event"] == "job.start":
                starts.setdefault(e["job_id"], []).append(f"w{i}")
    for job_id in ids:
        job = stack.job(job_id)
        assert job.status == "succeeded" and job.attempts == 1, job.error
        assert len(starts[job_id]) == 1, starts[job_id]
    # Which worker ran how many depends on start-up timing on a loaded machine; what matters
    # is that every job started exactly once, checked above.


def _clean_merge_digests(models: Models, dest: Path, max_shard_bytes: int) -> dict[str, str]:
    ref = merge_checkpoint(
        models.base.path,
        [(models.adapter.path, 1.0)],
        dest,
        device="cpu",
        max_shard_bytes=max_shard_bytes,
    )
    return {f.path: "sha256:" + f.sha256.removeprefix("sha256:") for f in ref.files}


def test_worker_survives_postgres_outage_mid_merge(
    outage_stack: OutageStack, models: Models, tmp_path: Path
) -> None:
    stack = outage_stack
    assert stack.cluster is not None
    stack.register_base(models.base.path, "org/tiny")
    stack.push(models.adapter.path, "admin", "tiny-lora", "org/tiny")
    job_id = stack.submit(
        "merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"], "max_shard_bytes": 20_000}
    )
    log = tmp_path / "worker.log"
    proc = stack.spawn_worker(
        tmp_path / "home",
        log=log,
        worker_test_delay_seconds=0.5,
        job_lease_seconds=10,
        worker_backoff_max_seconds=2,
    )
    try:
        stack.wait(
            job_id,
            lambda j: j.type == "merge" and j.status == "running" and j.progress > 0.2,
            timeout=120,
        )
        stack.engine.dispose()  # the test's own connections would only see errors
        stack.cluster.stop()
        time.sleep(5)
        assert proc.poll() is None, (
            "the worker exited while the database was down:\n" + log.read_text()[-3000:]
        )
        stack.cluster.start()
        job = stack.wait(
            job_id, lambda j: j.status in ("succeeded", "failed", "cancelled"), timeout=120
        )
        assert proc.poll() is None, (
            "the worker exited after the outage:\n" + log.read_text()[-3000:]
        )
    finally:
        _stop(proc)
    assert job.status == "succeeded", (job.error, log.read_text()[-3000:])
    assert job.attempts == 1, job.error  # the outage did not cost the job an attempt
    want = _clean_merge_digests(models, tmp_path / "ref", 20_000)
    assert {a.path: a.blob_digest for a in job.artifacts} == want
    events = [e["event"] for e in _events(log)]
    assert "worker.database_unavailable" in events and "worker.database_back" in events, events


def test_dead_attempt_folder_is_reported_and_swept_on_the_same_home(
    pg_stack: Stack, models: Models, tmp_path: Path
) -> None:
    """``kill -9`` mid-merge leaves the attempt's folder with its half-written output;
    ``loreg gc --dry-run`` lists it, and the next worker on that home removes it at start."""
    stack = pg_stack
    stack.register_base(models.base.path, "org/tiny")
    stack.push(models.adapter.path, "admin", "tiny-lora", "org/tiny")
    job_id = stack.submit(
        "merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"], "max_shard_bytes": 20_000}
    )
    home = tmp_path / "home"
    work = home / "worker" / "work"
    a = stack.spawn_worker(
        home, log=tmp_path / "a.log", worker_test_delay_seconds=0.25, job_lease_seconds=2
    )
    try:
        stack.wait(
            job_id,
            lambda j: j.type == "merge" and j.status == "running" and j.progress > 0.3,
            timeout=120,
        )
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
    finally:
        _stop(a)
    (dead,) = list(work.iterdir())
    assert dead.name.startswith(f"{job_id}-1-")
    assert (dead / "out.incomplete").is_dir()

    gc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from loreg.cli.main import main; main()",
            "gc",
            "--dry-run",
            "--json",
        ],
        env=stack.env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gc.returncode == 0, gc.stderr
    listed = json.loads(gc.stdout)["work_folders"]
    assert [(f["path"], f["job_id"], f["attempt"]) for f in listed] == [(str(dead), job_id, 1)]
    assert listed[0]["size"] > 0 and dead.is_dir()  # a dry run removes nothing

    log_b = tmp_path / "b.log"
    b = stack.spawn_worker(home, log=log_b, job_lease_seconds=2)
    try:
        job = stack.wait(job_id, lambda j: j.status in ("succeeded", "failed"), timeout=120)
    finally:
        _stop(b)
    assert job.status == "succeeded" and job.attempts == 2, job.error
    swept = [e for e in _events(log_b) if e["event"] == "worker.work_folders_removed"]
    assert swept and swept[0]["folders"] == [str(dead)]
    assert not dead.exists() and list(work.iterdir()) == []
