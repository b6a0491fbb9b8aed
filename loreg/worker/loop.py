"""The worker: claim a job, hold its lease, run its handler, publish its outputs.

One job at a time per worker. While a handler runs, a lease thread renews the job's lease
every few seconds and refreshes two flags from the DB: *cancel requested* and *lease lost*
(every progress report notices them too); handlers (and the merge engine, between tensors)
check them, so a cancellation stops the work within a few seconds. Outputs are uploaded as
blobs first and then recorded (artifacts, result, status) in one transaction that also
checks the lease is still ours: a worker that was presumed dead cannot publish over the
attempt that replaced it, and outputs of a killed attempt are never visible (blobs without
rows are garbage, not outputs).

Failures (``loreg.worker.faults``): a deterministic error (an input the job cannot use, a
missing module, a bug) fails the job at once; an infrastructure error (the store, the disk,
the device) retries until the job's ``max_attempts``; a job whose worker died is re-queued by
whichever worker notices the lease expired first.

Outages: a worker never exits because the database or the store went away. With the
database unreachable, a running job goes on (its progress unrecorded, its lease unrenewed);
its outcome (success, failure, hand-back) is recorded once the database answers again, after
waits that double up to ``LOREG_WORKER_BACKOFF_MAX_SECONDS``, each one logged. If the lease
was taken over meanwhile, the outcome is dropped (the other attempt owns the job); if the
worker is told to stop first, nothing is recorded and the job is re-leased when its lease
expires. A job that failed *because* the database or the store was down is handed back
without spending an attempt, and the worker claims nothing more until they answer. An idle
worker polls the database with the same backoff. Each outage is logged when it starts
(``worker.database_unavailable``) and ends (``worker.database_back``, with its length) and
counted on the worker's ``/metrics`` (``loreg.worker.health``).

Work folders (``loreg.worker.workdirs``): each attempt works in its own locked folder; the
folders of dead attempts (a worker killed mid-merge) are removed at start-up and every few
minutes by any worker on the same ``LOREG_HOME``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
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

from loreg.background.housekeeping import Housekeeping
from loreg.config import Settings
from loreg.db.models import Job, JobStatus
from loreg.errors import Unavailable
from loreg.logging import job_id_var
from loreg.services import blobs, job_queue
from loreg.storage import BlobStore, open_store
from loreg.worker import faults, workdirs
from loreg.worker.cache import BaseCache
from loreg.worker.context import (
    JobCancelled,
    JobContext,
    Outcome,
    WorkerStopping,
    dependency_failed,
    dependency_ok,
    log_event,
)
from loreg.worker.faults import Backoff, Fault
from loreg.worker.health import HealthServer, WorkerHealth

Handler = Callable[[JobContext], Outcome]

#: Seconds between two sweeps of dead attempts' work folders (one also runs at start-up).
WORK_SWEEP_INTERVAL = 300.0


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


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class _LeaseKeeper(threading.Thread):
    """Renews the lease and mirrors cancel/lost into the context's events.

    With the database unreachable it keeps trying at its interval and never gives the job
    up on its own: only the database can say whether another worker took the job over.
    """

    def __init__(
        self,
        ctx: JobContext,
        lease_seconds: float,
        interval: float,
        housekeeping: Housekeeping | None = None,
    ) -> None:
        super().__init__(name=f"lease-{ctx.job_id[:8]}", daemon=True)
        self.ctx = ctx
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.housekeeping = housekeeping
        self.stopped = threading.Event()

    def run(self) -> None:
        health = self.ctx.health
        while not self.stopped.wait(self.interval):
            if self.housekeeping is not None and not (health and health.is_down("database")):
                # heartbeats, webhooks, scheduled GC go on during a long job (on their own
                # thread: they never hold up the renewal below)
                self.housekeeping.tick_in_background(current_job_id=self.ctx.job_id)
            try:
                with self.ctx.sessions() as s:
                    state = job_queue.renew_lease(
                        s, self.ctx.job_id, self.ctx.worker_id, lease_seconds=self.lease_seconds
                    )
                    s.commit()
            except Exception as exc:
                if faults.database_unavailable(exc):
                    dependency_failed(
                        health, "database", exc, worker=self.ctx.worker_id, job_id=self.ctx.job_id
                    )
                else:
                    self.ctx.log("lease.error", error=_short(exc))
                continue
            dependency_ok(health, "database", worker=self.ctx.worker_id)
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
    artifacts: list[job_queue.Artifact]
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
        self.housekeeping = Housekeeping.from_settings(
            settings, self.sessions, self.store, self.worker_id, self.device
        )
        self.health = WorkerHealth(self.worker_id, stall_seconds=settings.worker_stall_seconds)
        self._health_server: HealthServer | None = None
        self._idle_backoff = self._backoff()
        self._last_sweep: float | None = None

    def _backoff(self) -> Backoff:
        return Backoff(self.settings.worker_poll_seconds, self.settings.worker_backoff_max_seconds)

    # ------------------------------------------------------------------ loop

    def run(self, *, once: bool = False) -> int:
        """Process jobs; with ``once``, return when no job is queued. Returns jobs run.

        Never returns because of an error: a turn that fails is logged and retried later.
        """
        log_event(
            "worker.start",
            worker=self.worker_id,
            device=self.device,
            types=self.types,
            lease_seconds=self.lease_seconds,
        )
        self.start_health_server()
        done = 0
        try:
            while not self.stop_event.is_set():
                self.health.beat()
                if not self.health.is_down("database"):
                    self.housekeeping.tick()
                self._sweep_if_due()
                try:
                    ran = self.run_one()
                except Exception as exc:  # a bug in the loop itself: log it, keep going
                    log_event("worker.error", worker=self.worker_id, error=_short(exc))
                    ran = False
                done += int(ran)
                if ran:
                    continue
                if once:
                    break
                self.stop_event.wait(self._idle_wait())
        finally:
            self.health.set_state("stopping")
            log_event("worker.stop", worker=self.worker_id, jobs=done)
        return done

    def _idle_wait(self) -> float:
        """The poll interval, or a growing wait while the database or store is down."""
        if self.health.is_down("database") or self.health.is_down("store"):
            self.health.set_state(
                "waiting_for_database" if self.health.is_down("database") else "waiting_for_store"
            )
            return self._idle_backoff.next()
        self._idle_backoff.reset()
        self.health.set_state("idle")
        return self.settings.worker_poll_seconds

    def stop(self) -> None:
        self.stop_event.set()

    def interrupt(self) -> None:
        """Stop the running job at its next check and hand it back to the queue."""
        ctx = self._current
        if ctx is not None:
            ctx.shutdown_event.set()

    def close(self) -> None:
        if self._health_server is not None:
            self._health_server.close()
            self._health_server = None
        if self._engine is not None:
            self._engine.dispose()

    def start_health_server(self) -> int | None:
        """Serve ``/healthz`` and ``/metrics`` when ``LOREG_WORKER_HEALTH_PORT`` is set;
        returns the port."""
        port = self.settings.worker_health_port
        if port is None or self._health_server is not None:
            return self._health_server.port if self._health_server else None
        self._health_server = HealthServer(
            self.health, self.settings.worker_health_host, port
        ).start()
        log_event(
            "worker.health_endpoint",
            worker=self.worker_id,
            host=self.settings.worker_health_host,
            port=self._health_server.port,
        )
        return self._health_server.port

    def sweep_work_folders(self) -> list[workdirs.DeadFolder]:
        """Remove the work folders of dead attempts on this home (see ``workdirs``)."""
        self._last_sweep = time.monotonic()
        try:
            dead = workdirs.sweep(self.work_root)
        except OSError as exc:
            log_event("worker.error", worker=self.worker_id, error=_short(exc))
            return []
        if dead:
            self.health.folders_removed.inc(len(dead))
            log_event(
                "worker.work_folders_removed",
                worker=self.worker_id,
                folders=[d.path for d in dead],
                bytes=sum(d.size for d in dead),
            )
        return dead

    def _sweep_if_due(self) -> None:
        if self._last_sweep is None or time.monotonic() - self._last_sweep > WORK_SWEEP_INTERVAL:
            self.sweep_work_folders()

    def requeue_expired(self) -> list[str]:
        with self.sessions() as s:
            ids = job_queue.requeue_expired(s)
            s.commit()
        for job_id in ids:
            log_event("job.lease_expired", job_id=job_id, worker=self.worker_id)
        return ids

    def _may_requeue(self) -> bool:
        """Not within one lease period after an outage of the database ended: the workers
        that held jobs through it get the time to renew their leases before anyone takes
        their jobs for dead."""
        since = self.health.seconds_since_back("database")
        return since is None or since > self.lease_seconds

    def claim(self) -> Job | None:
        with self.sessions() as s:
            job = job_queue.claim(
                s, self.worker_id, lease_seconds=self.lease_seconds, types=self.types
            )
            s.commit()
            return job

    def run_one(self) -> bool:
        """Claim and run one job; ``False`` when the queue had nothing for us (or the
        database or store cannot be reached)."""
        if self.health.is_down("store") and not self._store_answers():
            return False
        try:
            if self._may_requeue():
                self.requeue_expired()
            job = self.claim()
        except Exception as exc:
            if faults.database_unavailable(exc):
                dependency_failed(self.health, "database", exc, worker=self.worker_id)
            else:
                log_event("worker.error", worker=self.worker_id, error=_short(exc))
            return False
        dependency_ok(self.health, "database", worker=self.worker_id)
        if job is None:
            return False
        self.execute(job)
        return True

    def _store_answers(self) -> bool:
        try:
            self.store.check()
        except Exception as exc:
            dependency_failed(self.health, "store", exc, worker=self.worker_id)
            return False
        dependency_ok(self.health, "store", worker=self.worker_id)
        return True

    # ------------------------------------------------------------------ one job

    def execute(self, job: Job) -> None:
        """Run one claimed job to an outcome. Never raises ``Exception``."""
        ctx = JobContext(
            job_id=job.id,
            job_type=job.type,
            params=dict(job.params or {}),
            attempt=job.attempts,
            worker_id=self.worker_id,
            settings=self.settings,
            store=self.store,
            sessions=self.sessions,
            cache=self.cache,
            device=self.device,
            workdir=self.work_root,
            submitted_by=job.submitted_by,
            health=self.health,
        )
        job_token = job_id_var.set(job.id)  # every log line of this job carries its id
        self.health.set_state("running", job.id)
        try:
            with workdirs.attempt_folder(self.work_root, job.id, job.attempts) as workdir:
                ctx.workdir = workdir
                self._attempt(ctx)
        except Exception as exc:  # no work folder (disk full?), or recording failed oddly
            ctx.log("job.error", error=_short(exc))
            with contextlib.suppress(Exception):
                self._failed(ctx, exc)
        finally:
            job_id_var.reset(job_token)
            self.health.set_state("idle")

    def _attempt(self, ctx: JobContext) -> None:
        ctx.log("job.start", inputs=[i.get("resolved") for i in ctx.params.get("inputs", [])])
        started = time.monotonic()
        keeper = _LeaseKeeper(ctx, self.lease_seconds, self.renew_interval, self.housekeeping)
        keeper.start()
        self._current = ctx
        uploaded: _Uploaded | None = None
        try:
            try:
                handler = self.handlers.get(ctx.job_type)
                if handler is None:
                    raise Unavailable(f"this worker has no handler for {ctx.job_type} jobs")
                ctx.check_cancel()
                outcome = handler(ctx)
                ctx.check_cancel()
                uploaded = self._upload(ctx, outcome)
                ctx.check_cancel()
                done = uploaded
                if (
                    self._record(
                        ctx,
                        lambda s: self._finish(s, ctx, outcome, done, started),
                        outputs=len(done.artifacts),
                    )
                    is not None
                ):
                    uploaded = None  # published: nothing to clean
            except JobCancelled:
                self._record(ctx, lambda s: job_queue.mark_cancelled(s, ctx.job_id, ctx.worker_id))
            except job_queue.LeaseLost:
                ctx.log("job.abandoned", reason="lease lost; another attempt owns the job")
                self.health.job_ended(ctx.job_type, "abandoned")
            except WorkerStopping:
                stopped = {
                    "code": "worker_stopped",
                    "message": f"worker {ctx.worker_id} stopped",
                    "details": None,
                }
                self._record(
                    ctx,
                    lambda s: job_queue.fail(
                        s, ctx.job_id, ctx.worker_id, stopped, retry=True, count_attempt=False
                    ),
                )
            except Exception as exc:
                self._failed(ctx, exc)
        finally:
            self._current = None
            keeper.stop()
            if uploaded is not None and uploaded.new_digests:
                if ctx.lost_event.is_set():
                    # another attempt owns the job and may be uploading these very digests
                    # (a merge's outputs are deterministic): deleting them could pull objects
                    # from under it; GC removes them once unreferenced past its grace period
                    ctx.log("job.outputs_left_for_gc", blobs=len(uploaded.new_digests))
                else:
                    self._discard_blobs(ctx, uploaded.new_digests)

    def _failed(self, ctx: JobContext, exc: Exception) -> None:
        """Record a failed attempt according to what failed (``faults.classify``)."""
        kind = faults.classify(exc)
        error = job_queue.error_dict(exc)
        if kind is Fault.DATABASE:
            dependency_failed(self.health, "database", exc, worker=self.worker_id)
            ctx.log("job.interrupted", reason="database unavailable", error=error)
            handed_back = {
                "code": "database_unavailable",
                "message": f"the database became unreachable during attempt {ctx.attempt}; "
                "the job was handed back without counting the attempt",
                "details": {"error": str(error.get("message", ""))[:500]},
            }
            self._record(
                ctx,
                lambda s: job_queue.fail(
                    s, ctx.job_id, ctx.worker_id, handed_back, retry=True, count_attempt=False
                ),
            )
            return
        if kind is Fault.INFRASTRUCTURE:
            counted = not (faults.store_unavailable(exc) and not self._store_answers())
            if not counted:  # the store is down: wait for it, then hand the job back
                ctx.log("job.interrupted", reason="blob store unavailable", error=error)
                self._wait_for_store(ctx)
            ctx.log("job.attempt_failed", error=error, kind=kind.value, retry=True, counted=counted)
            self._record(
                ctx,
                lambda s: job_queue.fail(
                    s, ctx.job_id, ctx.worker_id, error, retry=True, count_attempt=counted
                ),
            )
            return
        ctx.log("job.attempt_failed", error=error, kind=kind.value, retry=False)
        self._record(ctx, lambda s: job_queue.fail(s, ctx.job_id, ctx.worker_id, error))

    def _wait_for_store(self, ctx: JobContext) -> None:
        """Until the store answers (or the worker stops); the lease thread keeps renewing."""
        backoff = self._backoff()
        while not self.stop_event.is_set():
            self.health.set_state("waiting_for_store", ctx.job_id)
            self.stop_event.wait(backoff.next())
            if self._store_answers():
                break
        self.health.set_state("running", ctx.job_id)

    def _record(
        self, ctx: JobContext, write: Callable[[Session], Job], **fields: Any
    ) -> Job | None:
        """Write a job's outcome in one transaction, waiting for the database if need be.

        Returns the job as recorded; ``None`` when the lease was lost (another attempt owns
        the job: nothing of ours is recorded) or when the worker stopped before the
        database came back (the job is re-leased once its lease expires). Errors other than
        an unreachable database propagate.
        """
        backoff = self._backoff()
        while True:
            try:
                with self.sessions() as s:
                    job = write(s)
                    status = job.status
                    s.commit()
            except job_queue.LeaseLost:
                dependency_ok(self.health, "database", worker=self.worker_id)
                ctx.lost_event.set()
                ctx.log("job.abandoned", reason="lease lost before the outcome was recorded")
                self.health.job_ended(ctx.job_type, "abandoned")
                return None
            except Exception as exc:
                if not faults.database_unavailable(exc):
                    raise
                dependency_failed(self.health, "database", exc, worker=self.worker_id)
                if self.stop_event.is_set():
                    ctx.log(
                        "job.outcome_unrecorded",
                        reason="stopping while the database is unreachable; the job is "
                        "re-leased when its lease expires",
                    )
                    self.health.job_ended(ctx.job_type, "unrecorded")
                    return None
                delay = backoff.next()
                ctx.log("job.record_retry", retry_in=round(delay, 2), error=_short(exc))
                self.health.set_state("waiting_for_database", ctx.job_id)
                self.stop_event.wait(delay)
                continue
            dependency_ok(self.health, "database", worker=self.worker_id)
            self.health.set_state("running", ctx.job_id)
            outcome = "requeued" if status == JobStatus.QUEUED.value else status
            ctx.log(f"job.{outcome}", **fields)
            self.health.job_ended(ctx.job_type, outcome)
            return job

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
                up.artifacts.append(job_queue.Artifact(rel, digest, size))
                sent += size
                ctx.progress(0.9 + 0.09 * sent / total, f"uploaded {rel}")
        except BaseException:
            if ctx.lost_event.is_set():  # see _attempt: another attempt owns these digests
                ctx.log("job.outputs_left_for_gc", blobs=len(up.new_digests))
            else:
                self._discard_blobs(ctx, up.new_digests)
            up.new_digests.clear()
            raise
        return up

    def _discard_blobs(self, ctx: JobContext, digests: Sequence[str]) -> None:
        """Remove blobs this attempt uploaded that nothing in the DB records.

        Needs the database; when it is down the objects stay, and GC removes them as
        orphans once they are older than its grace period.
        """
        if not digests:
            return
        try:
            with self.sessions() as s:
                known = blobs.recorded(s, digests)
            for d in digests:
                if d not in known:
                    self.store.delete(d)
            ctx.log("job.outputs_discarded", blobs=len(digests) - len(known))
        except Exception as exc:
            ctx.log("job.cleanup_error", error=_short(exc))

    def _finish(
        self, s: Session, ctx: JobContext, outcome: Outcome, up: _Uploaded, started: float
    ) -> Job:
        result = dict(outcome.result)
        result["worker"] = ctx.worker_id
        result["seconds"] = round(time.monotonic() - started, 3)
        job = job_queue.finish(
            s,
            ctx.job_id,
            ctx.worker_id,
            result=result,
            artifacts=up.artifacts,
            outputs_ttl=self.outputs_ttl,
        )
        if outcome.commit is not None:
            extra = outcome.commit(s, up.artifacts)
            if extra:
                job.result = {**result, **extra}
        return job


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
