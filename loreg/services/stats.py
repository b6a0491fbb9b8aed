"""Fleet-wide figures read from the database: what ``/metrics`` reports at each scrape.

Every API replica reads the same rows, so each reports the same values (``loreg.api.metrics``
says how to aggregate them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loreg.db.models import Blob, Job, JobStatus, JobType
from loreg.db.ops import WorkerHeartbeat
from loreg.db.webhooks import DeliveryStatus, WebhookDelivery


@dataclass(frozen=True)
class WorkerBeat:
    """A worker's last heartbeat (Unix time) and whether it was running a job."""

    worker_id: str
    hostname: str
    device: str
    last_seen: float
    busy: bool


@dataclass(frozen=True)
class RegistryStats:
    #: jobs by (type, status), every pair present (zero when none)
    jobs: dict[tuple[str, str], int]
    #: run times in seconds of finished jobs, by (type, status)
    job_durations: dict[tuple[str, str], list[float]]
    workers: list[WorkerBeat]
    #: the last lease renewal (Unix time) of each worker's running jobs
    lease_renewals: dict[str, float]
    #: webhook deliveries by status, every status present
    deliveries: dict[str, int]
    blobs: int
    blob_bytes: int

    def queued(self, job_type: str) -> int:
        return self.jobs.get((job_type, JobStatus.QUEUED.value), 0)


def collect(session: Session) -> RegistryStats:
    """One consistent read of everything the metrics report."""
    return RegistryStats(
        jobs=_job_counts(session),
        job_durations=_job_durations(session),
        workers=[
            WorkerBeat(
                row.worker_id,
                row.hostname,
                row.device,
                row.last_seen_at.timestamp(),
                bool(row.current_job_id),
            )
            for row in session.scalars(select(WorkerHeartbeat))
        ],
        lease_renewals=_lease_renewals(session),
        deliveries=_delivery_counts(session),
        **_blob_totals(session),
    )


def _job_counts(session: Session) -> dict[tuple[str, str], int]:
    counts = {(t.value, s.value): 0 for t in JobType for s in JobStatus}
    for job_type, status, n in session.execute(
        select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)
    ):
        counts[(job_type, status)] = int(n)
    return counts


def _job_durations(session: Session) -> dict[tuple[str, str], list[float]]:
    """Start of the last attempt to finish, for succeeded and failed jobs."""
    samples: dict[tuple[str, str], list[float]] = {}
    for job_type, status, started, finished in session.execute(
        select(Job.type, Job.status, Job.started_at, Job.finished_at).where(
            Job.status.in_([JobStatus.SUCCEEDED.value, JobStatus.FAILED.value]),
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
    ):
        if started is None or finished is None:
            continue
        seconds = max((finished - started).total_seconds(), 0.0)
        samples.setdefault((str(job_type), str(status)), []).append(seconds)
    return samples


def _lease_renewals(session: Session) -> dict[str, float]:
    renewals: dict[str, float] = {}
    for owner, renewed in session.execute(
        select(Job.lease_owner, func.max(Job.updated_at))
        .where(Job.status == JobStatus.RUNNING.value, Job.lease_owner.is_not(None))
        .group_by(Job.lease_owner)
    ):
        if renewed is not None:
            renewals[str(owner)] = _timestamp(renewed)
    return renewals


def _delivery_counts(session: Session) -> dict[str, int]:
    by_status = dict(
        session.execute(
            select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        ).all()
    )
    return {status.value: int(by_status.get(status.value, 0)) for status in DeliveryStatus}


def _blob_totals(session: Session) -> dict[str, int]:
    n_blobs, n_bytes = session.execute(
        select(func.count(), func.coalesce(func.sum(Blob.size), 0)).select_from(Blob)
    ).one()
    return {"blobs": int(n_blobs), "blob_bytes": int(n_bytes)}


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)
