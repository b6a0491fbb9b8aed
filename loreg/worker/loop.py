"""The worker: claim a job, hold its lease, run its handler, publish its outputs.

One job at a time per worker. While a handler runs, a lease thread renews the job's lease
every few seconds and refreshes two flags from the DB: *cancel requested* and *lease lost*;
handlers (and the merge engine, between tensors) check them, so a cancellation stops the
work within a few seconds. Outputs are uploaded as blobs first and then recorded (artifacts,
result, status) in one transaction that also checks the lease is still ours: a worker that
was presumed dead cannot publish over the attempt that replaced it, and outputs of a killed
attempt are never visible (blobs without rows are garbage, not outputs).

Failures: typed loreg errors that describe the input (incompatible, invalid, not found) fail
the job at once; anything else (storage down, a bug, a crash) retries until the job's
``max_attempts``; a job whose worker died is re-queued by whichever worker notices the lease
expired first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from loreg.config import Settings
from loreg.db.models import Blob, Job
from loreg.errors import LoregError, Unavailable
from loreg.logging import job_id_var
from loreg.services import jobs as jobs_service
from loreg.services.housekeeping import Housekeeping
from loreg.storage import BlobStore, open_store
from loreg.worker.cache import BaseCache
from loreg.worker.context import (
    JobCancelled,
    JobContext,
    Outcome,
    WorkerStopping,
    log_event,
)

Handler = Callable[[JobContext], Outcome]


def default_handlers() -> dict[str, Handler]:
    from loreg.worker.handlers import HANDLERS

    return dict(HANDLERS)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def resolve_device_name(device: str) -> str:
    """``auto`` -> ``cuda`` if available, else ``cpu``; asking for a missing CUDA is an error."""
    from loreg.merge.device import resolve_device

    return str(resolve_device(device))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _LeaseKeeper(threading.Thread):
    """Renews the lease and mirrors cancel/lost into the context's events."""

    def __init__(self, ctx: JobContext, lease_seconds: float, interval: float,
                 housekeeping: Housekeeping | None = None) -> None:
        super().__init__(name=f"lease-{ctx.job_id[:8]}", daemon=True)
        self.ctx = ctx
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.housekeeping = housekeeping
        self.stopped = threading.Event()

    def run(self) -> None:
        last_ok = time.monotonic()
        while not self.stopped.wait(self.interval):
            if self.housekeeping is not None:
                # heartbeats, webhooks, scheduled GC go on during a long job (on their own
                # thread: they never hold up the renewal below)
                self.housekeeping.tick_in_background(current_job_id=self.ctx.job_id)
            try:
                with self.ctx.sessions() as s:
                    state = jobs_service.renew_lease(s, self.ctx.job_id, self.ctx.worker_id,
                                                     lease_seconds=self.lease_seconds)
                    s.commit()
                last_ok = time.monotonic()
            except Exception as exc:  # DB briefly unreachable: keep trying until expiry
                self.ctx.log("lease.error", error=str(exc)[:500])
                if time.monotonic() - last_ok > self.lease_seconds:
                    self.ctx.lost_event.set()
                continue
            if not state.owned:
                self.ctx.log("lease.lost")
                self.ctx.lost_event.set()
            if state.cancel_requested and not self.ctx.cancel_event.is_set():
                self.ctx.log("job.cancel_seen")
                self.ctx.cancel_event.set()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)


@dataclass
class _Uploaded:
    artifacts: list[jobs_service.Artifact]
    new_digests: list[str]  # blobs this attempt created (candidates for cleanup)


class Worker:
    """A job worker: ``run()`` loops until stopped; ``run(once=True)`` drains the queue."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session] | None = None,
        store: BlobStore | None = None,
        worker_id: str | None = None,
        device: str | None = None,
        handlers: dict[str, Handler] | None = None,
        types: Sequence[str] | None = None,
    ) -> None:
        from loreg.db import create_engine_for, make_sessionmaker

        self.settings = settings
        self._engine = None
        if sessions is None:
            self._engine = create_engine_for(settings.effective_database_url)
            sessions = make_sessionmaker(self._engine)
        self.sessions = sessions
        self.store = store or open_store(settings)
        self.worker_id = worker_id or new_worker_id()
        self.device = resolve_device_name(device or settings.worker_device)
        self.handlers = handlers if handlers is not None else default_handlers()
        self.types = list(types) if types else sorted(self.handlers)
        self.cache = BaseCache(settings.home / "worker" / "bases", settings.base_cache_bytes)
        self.work_root = settings.home / "worker" / "work"
        self.stop_event = threading.Event()
        self._current: JobContext | None = None
        self.lease_seconds = float(settings.job_lease_seconds)
        # renew well before expiry, and poll cancellation every couple of seconds at most
        self.renew_interval = max(0.2, min(2.0, self.lease_seconds / 3))
        hours = settings.job_outputs_expire_hours
        self.outputs_ttl = timedelta(hours=hours) if hours > 0 else None
        self.housekeeping = Housekeeping.from_settings(settings, self.sessions, self.store,
                                                     self.worker_id, self.device)

    # ------------------------------------------------------------------ loop

    def run(self, *, once: bool = False) -> int:
        """Process jobs; with ``once``, return when no job is queued. Returns jobs run."""
        log_event("worker.start", worker=self.worker_id, device=self.device,
                  types=self.types, lease_seconds=self.lease_seconds)
        done = 0
        try:
            while not self.stop_event.is_set():
                self.housekeeping.tick()
                ran = self.run_one()
                done += int(ran)
                if not ran:
                    if once:
                        break
                    self.stop_event.wait(self.settings.worker_poll_seconds)
        finally:
            log_event("worker.stop", worker=self.worker_id, jobs=done)
        return done

    def stop(self) -> None:
        self.stop_event.set()

    def interrupt(self) -> None:
        """Stop the running job at its next check and hand it back to the queue."""
        ctx = self._current
        if ctx is not None:
            ctx.shutdown_event.set()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def requeue_expired(self) -> list[str]:
        with self.sessions() as s:
            ids = jobs_service.requeue_expired(s)
            s.commit()
        for job_id in ids:
            log_event("job.lease_expired", job_id=job_id, worker=self.worker_id)
        return ids

    def claim(self) -> Job | None:
        with self.sessions() as s:
            job = jobs_service.claim(s, self.worker_id, lease_seconds=self.lease_seconds,
                                     types=self.types)
            s.commit()
            return job

    def run_one(self) -> bool:
        """Claim and run one job; ``False`` when the queue had nothing for us."""
        try:
            self.requeue_expired()
            job = self.claim()
        except Exception as exc:  # DB down: report and let the loop retry later
            log_event("worker.error", worker=self.worker_id, error=str(exc)[:500])
            return False
        if job is None:
            return False
        self.execute(job)
        return True

    # ------------------------------------------------------------------ one job

    def execute(self, job: Job) -> None:
        workdir = self.work_root / f"{job.id}-{job.attempts}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        ctx = JobContext(
            job_id=job.id, job_type=job.type, params=dict(job.params or {}),
            attempt=job.attempts, worker_id=self.worker_id, settings=self.settings,
            store=self.store, sessions=self.sessions, cache=self.cache, device=self.device,
            workdir=workdir, submitted_by=job.submitted_by,
        )
        job_token = job_id_var.set(job.id)  # every log line of this job carries its id
        ctx.log("job.start", inputs=[i.get("resolved") for i in ctx.params.get("inputs", [])])
        started = time.monotonic()
        keeper = _LeaseKeeper(ctx, self.lease_seconds, self.renew_interval, self.housekeeping)
        keeper.start()
        self._current = ctx
        uploaded: _Uploaded | None = None
        try:
            handler = self.handlers.get(job.type)
            if handler is None:
                raise Unavailable(f"this worker has no handler for {job.type} jobs")
            ctx.check_cancel()
            outcome = handler(ctx)
            ctx.check_cancel()
            uploaded = self._upload(ctx, outcome)
            ctx.check_cancel()
            self._finish(ctx, outcome, uploaded, started)
            uploaded = None  # published: nothing to clean
        except JobCancelled:
            self._settle(ctx, "cancelled", lambda s: jobs_service.mark_cancelled(
                s, ctx.job_id, ctx.worker_id))
        except jobs_service.LeaseLost:
            ctx.log("job.abandoned", reason="lease lost; another attempt owns the job")
        except WorkerStopping:
            stopped = {"code": "worker_stopped", "message": f"worker {ctx.worker_id} stopped",
                       "details": None}
            self._settle(ctx, "requeued", lambda s: jobs_service.fail(
                s, ctx.job_id, ctx.worker_id, stopped, retry=True))
        except Exception as exc:
            retry = not isinstance(exc, LoregError) or isinstance(exc, Unavailable)
            error = jobs_service.error_dict(exc)
            ctx.log("job.failed", error=error, retry=retry)
            self._settle(ctx, "failed", lambda s: jobs_service.fail(
                s, ctx.job_id, ctx.worker_id, error, retry=retry))
        finally:
            self._current = None
            keeper.stop()
            if uploaded is not None:
                self._discard_blobs(ctx, uploaded.new_digests)
            shutil.rmtree(workdir, ignore_errors=True)
            job_id_var.reset(job_token)

    def _settle(self, ctx: JobContext, what: str, write: Callable[[Session], Any]) -> None:
        try:
            with self.sessions() as s:
                write(s)
                s.commit()
            ctx.log(f"job.{what}")
        except jobs_service.LeaseLost:
            ctx.log("job.abandoned", reason="lease lost before recording the outcome")

    def _upload(self, ctx: JobContext, outcome: Outcome) -> _Uploaded:
        up = _Uploaded([], [])
        if outcome.output_dir is None:
            return up
        root = outcome.output_dir
        files = sorted(p for p in root.rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files) or 1
        sent = 0
        ctx.progress(0.9, "uploading outputs", force=True)
        try:
            for path in files:
                ctx.check_cancel()
                rel = path.relative_to(root).as_posix()
                hexd = outcome.hashes.get(rel) or _sha256_file(path)
                digest = hexd if hexd.startswith("sha256:") else "sha256:" + hexd
                existed = self.store.exists(digest)
                size = self.store.put_file(digest, path)
                if not existed:
                    up.new_digests.append(digest)
                up.artifacts.append(jobs_service.Artifact(rel, digest, size))
                sent += size
                ctx.progress(0.9 + 0.09 * sent / total, f"uploaded {rel}")
        except BaseException:
            self._discard_blobs(ctx, up.new_digests)
            up.new_digests.clear()
            raise
        return up

    def _discard_blobs(self, ctx: JobContext, digests: Sequence[str]) -> None:
        """Remove blobs this attempt uploaded that nothing in the DB records."""
        if not digests:
            return
        try:
            with self.sessions() as s:
                known = {d for d in digests if s.get(Blob, d) is not None}
            for d in digests:
                if d not in known:
                    self.store.delete(d)
            ctx.log("job.outputs_discarded", blobs=len(digests) - len(known))
        except Exception as exc:
            ctx.log("job.cleanup_error", error=str(exc)[:500])

    def _finish(self, ctx: JobContext, outcome: Outcome, up: _Uploaded, started: float) -> None:
        result = dict(outcome.result)
        result["worker"] = ctx.worker_id
        result["seconds"] = round(time.monotonic() - started, 3)
        with self.sessions() as s:
            job = jobs_service.finish(s, ctx.job_id, ctx.worker_id, result=result,
                                      artifacts=up.artifacts, outputs_ttl=self.outputs_ttl)
            if outcome.commit is not None:
                extra = outcome.commit(s, up.artifacts)
                if extra:
                    job.result = {**result, **extra}
            s.commit()
        ctx.log("job.succeeded", seconds=result["seconds"], outputs=len(up.artifacts))


# --------------------------------------------------------------------------- in-process


class InProcessWorker:
    """A worker on a daemon thread (``loreg serve`` on the embedded default)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=self._run, name="loreg-worker", daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            self.worker.run()

    def start(self) -> InProcessWorker:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.worker.stop()
        self.worker.interrupt()
        self.thread.join(timeout)
        self.worker.close()


def start_in_process(settings: Settings, **kwargs: Any) -> InProcessWorker:
    """Start a worker thread in this process; call ``.stop()`` on the handle to end it."""
    return InProcessWorker(Worker(settings, **kwargs)).start()

