"""What a job handler gets (``JobContext``) and gives back (``Outcome``).

Handlers do the work of one job type and know nothing of leases: they report progress,
call ``check_cancel()`` often (the merge engine calls it between tensors), write their
outputs under ``workdir`` and return an ``Outcome``. The loop uploads the outputs and
records everything in one transaction, including the handler's own ``commit`` step
(a combine's new version, a validation's report), so a job's effects appear all at once.

Progress is best effort: while the database is unreachable the handler keeps working and
its progress goes unrecorded (the first failure of an outage is logged once); reading its
inputs from the database, though, raises, and the worker hands the job back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from loreg.config import Settings
from loreg.services import adapters, bases, job_queue
from loreg.storage import BlobStore
from loreg.worker import faults
from loreg.worker.cache import BaseCache, CachedFile, _safe_relpath
from loreg.worker.health import WorkerHealth

logger = logging.getLogger("loreg.worker")

#: Minimum seconds between two progress writes (the last one always goes through).
PROGRESS_INTERVAL = 0.25


class JobCancelled(Exception):
    """The job's cancellation was requested; the handler's work is abandoned."""


class WorkerStopping(Exception):
    """The worker is shutting down; the job goes back to the queue."""


def log_event(event: str, **fields: Any) -> None:
    """One structured JSON log line (``{"event": ..., "job_id": ..., ...}``)."""
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    level = (
        logging.WARNING
        if event.endswith(("failed", "error", "lost", "unavailable"))
        else logging.INFO
    )
    logger.log(level, json.dumps(record, default=str, sort_keys=False))


def dependency_failed(
    health: WorkerHealth | None, dependency: str, exc: BaseException, **fields: Any
) -> None:
    """Note a failed use of the database or the store; logs the first failure of an outage
    (``worker.database_unavailable``, ``worker.store_unavailable``)."""
    if health is None or health.down(dependency):
        log_event(
            f"worker.{dependency}_unavailable", error=f"{type(exc).__name__}: {exc}"[:500], **fields
        )


def dependency_ok(health: WorkerHealth | None, dependency: str, **fields: Any) -> None:
    """Note a successful use; logs the end of an outage (``worker.database_back``) with its
    length."""
    seconds = health.up(dependency) if health is not None else None
    if seconds is not None:
        log_event(f"worker.{dependency}_back", down_seconds=round(seconds, 3), **fields)


@dataclass
class Outcome:
    """A handler's result: JSON for the job, an output folder to publish, a DB step."""

    result: dict[str, Any]
    output_dir: Path | None = None
    #: known sha256 hex of output files by relative path (saves re-hashing big shards)
    hashes: dict[str, str] = field(default_factory=dict)
    #: runs inside the finishing transaction with the uploaded artifacts; may return
    #: extra result fields
    commit: Callable[[Session, Sequence[Any]], dict[str, Any] | None] | None = None


@dataclass
class JobContext:
    job_id: str
    job_type: str
    params: dict[str, Any]
    attempt: int
    worker_id: str
    settings: Settings
    store: BlobStore
    sessions: sessionmaker[Session]
    cache: BaseCache
    device: str
    workdir: Path
    submitted_by: int | None = None
    health: WorkerHealth | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    lost_event: threading.Event = field(default_factory=threading.Event)
    shutdown_event: threading.Event = field(default_factory=threading.Event)
    _last_progress: float = 0.0
    _last_fraction: float = -1.0

    def log(self, event: str, **fields: Any) -> None:
        log_event(
            event,
            job_id=self.job_id,
            worker=self.worker_id,
            type=self.job_type,
            attempt=self.attempt,
            **fields,
        )

    def check_cancel(self) -> None:
        """Raise if the job was cancelled or its lease lost (seen by the lease thread)."""
        if self.health is not None:
            self.health.beat()
        if self.lost_event.is_set():
            raise job_queue.LeaseLost(
                f"job {self.job_id} lease lost", details={"job_id": self.job_id}
            )
        if self.cancel_event.is_set():
            raise JobCancelled(self.job_id)
        if self.shutdown_event.is_set():
            raise WorkerStopping(self.job_id)

    def progress(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        """Record progress (throttled); never goes backwards within an attempt. Also notices
        a cancellation, so a job stops at its next progress report rather than at the
        lease thread's next renewal.

        Best effort: with the database unreachable nothing is recorded and the work goes on.
        """
        if self.health is not None:
            self.health.beat()
        fraction = max(self._last_fraction, min(1.0, max(0.0, fraction)))
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self._last_fraction = fraction
        try:
            with self.sessions() as s:
                owned = job_queue.record_progress(s, self.job_id, self.worker_id, fraction, message)
                cancel = owned and job_queue.cancel_requested(s, self.job_id)
                s.commit()
        except Exception as exc:
            if not faults.database_unavailable(exc):
                raise
            dependency_failed(
                self.health, "database", exc, worker=self.worker_id, job_id=self.job_id
            )
            return
        dependency_ok(self.health, "database", worker=self.worker_id)
        if not owned:
            self.lost_event.set()
        elif cancel and not self.cancel_event.is_set():  # seen here before the lease thread
            self.log("job.cancel_seen")
            self.cancel_event.set()

    # ------------------------------------------------------------------ inputs

    def fetch_version(self, version_id: int, label: str) -> Path:
        """Download a version's files into ``workdir/inputs/<label>`` (digests verified)."""
        with self.sessions() as s:
            files = adapters.version_files(s, version_id)
        dest = self.workdir / "inputs" / label
        for f in files:
            self.check_cancel()
            self.store.download(f.digest, dest / _safe_relpath(f.path))
        return dest

    def base_files(self, base_id: int) -> list[CachedFile]:
        with self.sessions() as s:
            return [CachedFile(f.path, f.digest, f.size) for f in bases.base_files(s, base_id)]
