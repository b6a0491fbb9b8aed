"""Periodic work every worker does between (and during) jobs: heartbeats, webhook
deliveries, scheduled garbage collection, pruning old delivery logs.

The worker loop owns one :class:`Housekeeping` and calls :meth:`Housekeeping.tick` on each
turn; ``tick`` decides what is due, never raises, and returns quickly when nothing is.
While a job runs, the worker's lease thread calls :meth:`Housekeeping.tick_in_background`
instead: the work runs on a helper thread, so a slow webhook receiver or a long collection
never delays a lease renewal. One tick runs at a time; a tick that finds another running
returns at once.

Scheduled GC runs at most once per ``gc_interval`` across *all* workers: the last run is
the newest ``gc.run`` audit event, and on PostgreSQL an advisory lock keeps two workers
from collecting at the same moment (on SQLite there is one machine, and a concurrent run
would be harmless anyway: every delete re-checks its condition).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from loreg.background import gc, webhooks
from loreg.db.models import AuditEvent
from loreg.db.ops import WorkerHeartbeat
from loreg.db.session import is_postgres
from loreg.services.egress import STRICT, EgressPolicy
from loreg.storage import BlobStore

if TYPE_CHECKING:
    from loreg.config import Settings

log = logging.getLogger("loreg.housekeeping")

GC_LOCK_KEY = 0x6C6F726567  # "loreg"
HEARTBEAT_FORGET = timedelta(days=1)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Housekeeping:
    sessions: sessionmaker[Session]
    store: BlobStore
    worker_id: str
    device: str = ""
    heartbeat_interval: float = 5.0
    webhook_interval: float = 2.0
    gc_interval: timedelta = timedelta(hours=24)
    gc_check_interval: float = 300.0
    gc_grace: timedelta = gc.DEFAULT_GRACE
    gc_retention: timedelta = gc.DEFAULT_RETENTION
    webhook_max_attempts: int = webhooks.MAX_ATTEMPTS
    webhook_backoff_max: float = webhooks.BACKOFF_MAX
    webhook_policy: EgressPolicy = STRICT
    delivery_log_retention: timedelta = timedelta(days=30)
    enabled: bool = True
    _last: dict[str, float] = field(default_factory=dict)
    _started_at: datetime = field(default_factory=_now)
    _running: threading.Lock = field(default_factory=threading.Lock)
    _background: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessions: sessionmaker[Session],
        store: BlobStore,
        worker_id: str,
        device: str = "",
    ) -> Housekeeping:
        """The operator-tunable intervals and limits from ``LOREG_*`` settings."""
        return cls(
            sessions,
            store,
            worker_id,
            device,
            gc_interval=timedelta(hours=settings.gc_interval_hours),
            gc_grace=timedelta(hours=settings.gc_grace_hours),
            gc_retention=timedelta(hours=settings.gc_deleted_version_retention_hours),
            webhook_max_attempts=settings.webhook_max_attempts,
            webhook_backoff_max=settings.webhook_backoff_max_seconds,
            webhook_policy=EgressPolicy.from_settings(settings),
        )

    def __post_init__(self) -> None:
        # the first GC check comes one check interval after start, not at start: short-lived
        # workers (``loreg worker --once``, tests) never collect
        self._last["gc"] = self._started_at.timestamp()

    def _due(self, what: str, interval: float, now: float) -> bool:
        last = self._last.get(what)
        if last is not None and now - last < interval:
            return False
        self._last[what] = now
        return True

    def _safely(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # the DB or a receiver is down: try again next time
            log.warning("housekeeping: %s failed: %s", what, exc)

    def tick(self, *, current_job_id: str | None = None) -> None:
        """Do whatever is due. Never raises; returns at once if another tick is running."""
        if not self.enabled or not self._running.acquire(blocking=False):
            return
        try:
            self._tick(current_job_id)
        finally:
            self._running.release()

    def tick_in_background(self, *, current_job_id: str | None = None) -> None:
        """``tick`` on a helper thread, unless the previous one is still busy."""
        if not self.enabled or (self._background is not None and self._background.is_alive()):
            return
        self._background = threading.Thread(
            target=self.tick,
            kwargs={"current_job_id": current_job_id},
            name="housekeeping",
            daemon=True,
        )
        self._background.start()

    def _tick(self, current_job_id: str | None) -> None:
        now = _now().timestamp()
        if self._due("heartbeat", self.heartbeat_interval, now):
            self._safely("heartbeat", lambda: self.heartbeat(current_job_id))
        if self._due("webhooks", self.webhook_interval, now):
            self._safely("webhook delivery", self.deliver_webhooks)
        if self._due("gc", self.gc_check_interval, now):
            self._safely("scheduled gc", self.gc_if_due)

    def deliver_webhooks(self) -> webhooks.DeliveryStats:
        return webhooks.deliver_pending(
            self.sessions,
            max_attempts=self.webhook_max_attempts,
            backoff_max=self.webhook_backoff_max,
            policy=self.webhook_policy,
        )

    def heartbeat(self, current_job_id: str | None = None) -> None:
        with self.sessions() as s:
            row = s.get(WorkerHeartbeat, self.worker_id)
            if row is None:
                row = WorkerHeartbeat(
                    worker_id=self.worker_id,
                    hostname=socket.gethostname(),
                    device=self.device,
                    started_at=self._started_at,
                )
                s.add(row)
            row.last_seen_at = _now()
            row.current_job_id = current_job_id
            s.execute(
                delete(WorkerHeartbeat).where(
                    WorkerHeartbeat.last_seen_at < _now() - HEARTBEAT_FORGET
                )
            )
            s.commit()

    def last_gc(self) -> datetime | None:
        with self.sessions() as s:
            return s.scalar(select(func.max(AuditEvent.at)).where(AuditEvent.action == "gc.run"))

    def gc_if_due(self) -> gc.GcReport | None:
        """Run a collection if none ran for ``gc_interval``; returns its report."""
        last = self.last_gc()
        if last is not None and _now() - last < self.gc_interval:
            return None
        with self.sessions() as lock_session:
            if is_postgres(lock_session):
                got = lock_session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": GC_LOCK_KEY}
                )
                if not got:
                    return None
                last = self.last_gc()
                if last is not None and _now() - last < self.gc_interval:
                    return None
            report = gc.run(
                self.sessions, self.store, grace=self.gc_grace, retention=self.gc_retention
            )
            with self.sessions() as s:
                pruned = webhooks.prune(s, older_than=self.delivery_log_retention)
                gc.record_run(s, report, f"worker {self.worker_id}", webhook_events_pruned=pruned)
                s.commit()
            lock_session.rollback()  # releases the advisory lock
        return report
