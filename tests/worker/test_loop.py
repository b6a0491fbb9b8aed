"""The worker loop with real handlers on SQLite + a local store: merge results equal PEFT's,
a base whose bytes do not match its fingerprint fails clearly, cancellation stops a running
merge and leaves nothing behind, and a stopping worker hands its job back. Faults: a
deterministic error fails at once, an infrastructure error retries up to the attempt limit,
and outages of the store or the database (a real PostgreSQL stopped mid-job) cost no attempt
and lose no result."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from loreg.db import Blob, Job
from loreg.db.ops import WorkerHeartbeat
from loreg.logging import JsonFormatter, job_id_var
from loreg.services import jobs
from loreg.storage.base import StorageUnavailable
from loreg.storage.local import LocalBlobStore
from loreg.worker.context import JobCancelled, JobContext, Outcome
from loreg.worker.loop import Worker
from tests.factories.worker_stack import Models, OutageStack, Stack, assert_matches_peft


def seed(stack: Stack, models: Models, *, lie: bool = False) -> None:
    stack.register_base(
        models.base.path, "org/tiny", fingerprint_of=models.other.path if lie else None
    )
    stack.push(models.adapter.path, "admin", "tiny-lora", "org/tiny")


def worker(stack: Stack, **kw: Any) -> Worker:
    return Worker(stack.settings, sessions=stack.sessions, store=stack.store, **kw)


def test_merge_job_equals_peft_and_uses_cache(stack: Stack, models: Models, tmp_path: Path) -> None:
    seed(stack, models)
    job_id = stack.submit(
        "merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"], "max_shard_bytes": 1 << 20}
    )
    w = worker(stack)
    assert w.run(once=True) == 2  # the push's validation job and the merge
    job = stack.job(job_id)
    assert job.status == "succeeded", job.error
    assert job.attempts == 1 and job.progress == 1.0
    assert job.result is not None and job.result["changed_tensors"] > 0
    paths = {a.path for a in job.artifacts}
    assert "config.json" in paths and any(p.endswith(".safetensors") for p in paths)
    assert not any("incomplete" in p for p in paths)
    assert_matches_peft(stack.download_outputs(job_id, tmp_path / "out"), models)

    # a second merge into the same base reads it from the cache, not the store
    misses = w.cache.misses
    again = stack.submit(
        "merge", {"base": "org/tiny", "adapters": [{"ref": "admin/tiny-lora", "weight": 0.5}]}
    )
    assert w.run(once=True) == 1
    assert stack.job(again).status == "succeeded"
    assert w.cache.misses == misses and w.cache.hits >= 1
    # the work folders are gone
    assert not any((stack.settings.home / "worker" / "work").iterdir())


def test_base_with_wrong_fingerprint_fails_clearly(stack: Stack, models: Models) -> None:
    seed(stack, models, lie=True)
    job_id = stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"]})
    w = worker(stack)
    w.run(once=True)
    job = stack.job(job_id)
    assert job.status == "failed" and job.attempts == 1  # not retried: it cannot succeed
    assert job.error is not None and job.error["code"] == "base_fingerprint_mismatch"
    assert "do not match its recorded fingerprint" in job.error["message"]
    assert "org/tiny" in job.error["message"]
    assert job.artifacts == []
    assert not w.cache.has(job.params["base"]["fingerprint"])  # the bad entry is dropped


def test_cancel_running_merge(stack: Stack, models: Models) -> None:
    seed(stack, models)
    settings = stack.settings.model_copy(
        update={"worker_test_delay_seconds": 0.2, "job_lease_seconds": 3}
    )
    job_id = stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"]})
    w = Worker(settings, sessions=stack.sessions, store=stack.store, types=["merge"])
    blobs_before = {d for d, _, _ in stack.store.iterate()}
    thread = threading.Thread(target=w.run, kwargs={"once": True})
    thread.start()
    try:
        stack.wait(job_id, lambda j: j.status == "running" and j.progress > 0.2)
        with stack.sessions() as s:
            jobs.cancel(s, stack.admin, job_id)
            s.commit()
        job = stack.wait(job_id, lambda j: j.status != "running", timeout=10)
    finally:
        w.stop()
        thread.join(30)
    assert job.status == "cancelled"
    assert job.artifacts == [] and job.progress < 1.0
    assert {d for d, _, _ in stack.store.iterate()} == blobs_before  # nothing uploaded
    work = stack.settings.home / "worker" / "work"
    assert not any(work.iterdir())  # partial output removed


def test_interrupted_worker_hands_job_back(stack: Stack, models: Models) -> None:
    seed(stack, models)
    settings = stack.settings.model_copy(update={"worker_test_delay_seconds": 0.2})
    job_id = stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"]})
    w = Worker(settings, sessions=stack.sessions, store=stack.store, types=["merge"])
    thread = threading.Thread(target=w.run)
    thread.start()
    stack.wait(job_id, lambda j: j.status == "running" and j.progress > 0.15)
    w.stop()
    w.interrupt()
    thread.join(30)
    job = stack.job(job_id)
    assert job.status == "queued" and job.error is not None
    assert job.error["code"] == "worker_stopped"


def test_housekeeping_and_job_id_logging_during_a_job(stack: Stack, models: Models) -> None:
    """The lease thread keeps housekeeping going while a handler runs (the heartbeat names
    the job), and log lines made inside the job carry its id."""
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    seen: dict[str, Any] = {}

    def slow_export(ctx: JobContext) -> Outcome:
        record = logging.LogRecord("loreg.test", logging.INFO, __file__, 0, "inside", None, None)
        seen["log"] = json.loads(JsonFormatter().format(record))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with stack.sessions() as s:
                row = s.get(WorkerHeartbeat, ctx.worker_id)
                if row is not None and row.current_job_id == ctx.job_id:
                    seen["heartbeat"] = row.current_job_id
                    break
            time.sleep(0.1)
        return Outcome(result={})

    w = worker(stack, handlers={"export": slow_export})
    w.housekeeping.heartbeat_interval = 0.2
    assert w.run(once=True) == 1
    assert stack.job(job_id).status == "succeeded"
    assert seen["heartbeat"] == job_id
    assert seen["log"]["job_id"] == job_id
    assert job_id_var.get() is None  # reset after the job


# --------------------------------------------------------------------------- faults


def _events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "loreg.worker" and r.getMessage().startswith("{")
    ]


def _raising(exc: Exception, calls: list[int]) -> Callable[[JobContext], Outcome]:
    def handler(ctx: JobContext) -> Outcome:
        calls.append(ctx.attempt)
        raise exc

    return handler


@pytest.mark.parametrize(
    "exc", [RuntimeError("Numpy is not available"), ModuleNotFoundError("No module named 'numpy'")]
)
def test_deterministic_error_fails_the_job_at_once(
    stack: Stack, models: Models, exc: Exception
) -> None:
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    calls: list[int] = []
    w = worker(stack, handlers={"export": _raising(exc, calls)})
    w.run(once=True)
    job = stack.job(job_id)
    assert job.status == "failed" and job.attempts == 1 and job.max_attempts == 3
    assert calls == [1]
    assert job.error is not None and str(exc) in job.error["message"]


def test_infrastructure_error_retries_up_to_the_attempt_limit(stack: Stack, models: Models) -> None:
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    calls: list[int] = []
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    w = worker(stack, handlers={"export": _raising(disk_full, calls)})
    w.run(once=True)
    job = stack.job(job_id)
    assert calls == [1, 2, 3]
    assert job.status == "failed" and job.attempts == 3
    assert job.error is not None and "No space left on device" in job.error["message"]
    assert not any((stack.settings.home / "worker" / "work").iterdir())


def test_store_outage_hands_the_job_back_without_counting(
    stack: Stack, models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's folder vanishes mid-job: the worker waits for it to come back, hands the
    job back without spending the attempt, and the next try succeeds."""
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    store = stack.store
    assert isinstance(store, LocalBlobStore)
    blob_dir = store.blob_dir
    away = blob_dir.with_name(blob_dir.name + ".away")
    calls: list[int] = []

    def handler(ctx: JobContext) -> Outcome:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            blob_dir.rename(away)
            threading.Timer(1.0, away.rename, args=(blob_dir,)).start()
            raise StorageUnavailable("blob store unreachable")
        return Outcome(result={"tries": len(calls)})

    w = worker(stack, handlers={"export": handler})
    with caplog.at_level(logging.INFO, logger="loreg.worker"):
        w.run(once=True)
    job = stack.job(job_id)
    assert job.status == "succeeded", job.error
    assert calls == [1, 1] and job.attempts == 1  # the outage cost no attempt
    events = [e["event"] for e in _events(caplog)]
    assert "worker.store_unavailable" in events and "worker.store_back" in events, events
    assert events.index("worker.store_back") < events.index("job.requeued")


def test_database_outage_while_recording_the_outcome(
    outage_stack: OutageStack, models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL goes away between the work and its recording: the worker keeps the
    result and records it once the database is back, with logged retries."""
    stack = outage_stack
    cluster = stack.cluster
    assert cluster is not None
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})

    def handler(ctx: JobContext) -> Outcome:
        cluster.stop()
        threading.Timer(3.0, cluster.start).start()
        return Outcome(result={"kept": True})

    w = worker(stack, handlers={"export": handler})
    with caplog.at_level(logging.INFO, logger="loreg.worker"):
        assert w.run(once=True) == 1
    job = stack.job(job_id)
    assert job.status == "succeeded" and job.attempts == 1
    assert job.result is not None and job.result["kept"] is True
    events = [e["event"] for e in _events(caplog)]
    assert "job.record_retry" in events and "worker.database_unavailable" in events
    assert events.index("worker.database_back") < events.index("job.succeeded")


def test_database_outage_during_the_job_hands_it_back_without_counting(
    outage_stack: OutageStack, models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    stack = outage_stack
    cluster = stack.cluster
    assert cluster is not None
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    calls: list[int] = []

    def handler(ctx: JobContext) -> Outcome:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            cluster.stop()
            threading.Timer(3.0, cluster.start).start()
        version_id = int(ctx.params["inputs"][0]["version_id"])
        ctx.fetch_version(version_id, "a")  # reads the database: fails during the outage
        return Outcome(result={})

    w = worker(stack, handlers={"export": handler})
    with caplog.at_level(logging.INFO, logger="loreg.worker"):
        w.run(once=True)
    job = stack.job(job_id)
    assert job.status == "succeeded", job.error
    assert calls == [1, 1] and job.attempts == 1
    interrupted = [e for e in _events(caplog) if e["event"] == "job.interrupted"]
    assert interrupted and interrupted[0]["reason"] == "database unavailable"


def test_stopping_while_the_database_is_down_does_not_hang(
    outage_stack: OutageStack, models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker told to stop while it cannot record an outcome leaves the job to be
    re-leased when its lease expires, instead of waiting forever."""
    stack = outage_stack
    cluster = stack.cluster
    assert cluster is not None
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    w = worker(stack, handlers={})

    def handler(ctx: JobContext) -> Outcome:
        cluster.stop()
        threading.Timer(1.0, w.stop).start()
        return Outcome(result={})

    w.handlers["export"] = handler
    w.types = ["export"]
    with caplog.at_level(logging.INFO, logger="loreg.worker"):
        thread = threading.Thread(target=w.run)
        thread.start()
        thread.join(30)
    assert not thread.is_alive()
    events = [e["event"] for e in _events(caplog)]
    assert "job.outcome_unrecorded" in events, events
    cluster.start()
    job = stack.job(job_id)
    assert job.status == "running" and job.lease_owner == w.worker_id  # re-leased later


def test_lost_lease_leaves_uploaded_outputs_to_gc(
    stack: Stack, models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    """Another attempt takes the job over while this one uploads its outputs: it may be
    uploading the very same (deterministic) objects, so the loser deletes nothing; its
    outcome is dropped, and GC collects what nothing references."""
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    assert isinstance(stack.store, LocalBlobStore)

    class TakenOverDuringUpload(LocalBlobStore):
        def put_file(self, digest: str, path: Path, *, max_size: int | None = None) -> int:
            size = super().put_file(digest, path, max_size=max_size)
            with stack.sessions() as s:
                s.execute(update(Job).where(Job.id == job_id).values(lease_owner="other"))
                s.commit()
            return size

    def handler(ctx: JobContext) -> Outcome:
        out = ctx.workdir / "out"
        out.mkdir()
        (out / "weights.bin").write_bytes(b"deterministic output")
        return Outcome(result={}, output_dir=out)

    w = Worker(
        stack.settings,
        sessions=stack.sessions,
        store=TakenOverDuringUpload(stack.store.root),
        handlers={"export": handler},
    )
    with caplog.at_level(logging.INFO, logger="loreg.worker"):
        w.run(once=True)
    job = stack.job(job_id)
    assert job.status == "running" and job.lease_owner == "other" and job.artifacts == []
    digest = "sha256:" + hashlib.sha256(b"deterministic output").hexdigest()
    assert stack.store.exists(digest)
    with stack.sessions() as s:
        assert s.get(Blob, digest) is None  # unreferenced: GC's, after its grace period
    events = [e["event"] for e in _events(caplog)]
    assert "job.abandoned" in events and "job.outputs_left_for_gc" in events, events
    assert "job.outputs_discarded" not in events


def test_cancel_is_seen_at_the_next_progress_report(stack: Stack, models: Models) -> None:
    """A cancellation stops the job at its next progress report, not only at the lease
    thread's next renewal (seconds later)."""
    seed(stack, models)
    settings = stack.settings.model_copy(update={"job_lease_seconds": 60})  # renewals: 2 s
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    seen: list[str] = []

    def handler(ctx: JobContext) -> Outcome:
        with stack.sessions() as s:
            jobs.cancel(s, stack.admin, ctx.job_id)
            s.commit()
        ctx.progress(0.5, "halfway", force=True)
        try:
            ctx.check_cancel()
        except JobCancelled:
            seen.append("at progress")
            raise
        return Outcome(result={})

    w = Worker(settings, sessions=stack.sessions, store=stack.store, handlers={"export": handler})
    w.run(once=True)
    assert seen == ["at progress"]
    assert stack.job(job_id).status == "cancelled"
