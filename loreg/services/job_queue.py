"""The job queue, worker side: claim a job, hold and renew its lease, report progress,
finish, fail or hand it back.

The queue lives in the ``jobs`` table. A worker *claims* the oldest queued job of the highest
priority and holds a *lease* on it (owner + expiry) that it renews while it works. A job whose
lease expires goes back to the queue (its worker died) until ``max_attempts`` is reached, then
fails with the last error. Claiming is safe with any number of workers:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a row no other claimer holds;
- SQLite: a conditional ``UPDATE ... WHERE id = ? AND status = 'queued'`` whose row count says
  whether this claimer won (SQLite serialises writers, so exactly one does).

Every worker-side write is conditional on the lease (``lease_owner = me AND status =
'running'``): a worker that lost its lease (it stalled and another took over) cannot overwrite
the new attempt's progress or publish its outputs.

Nothing here commits: the worker ends each transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from loreg.db.models import Blob, Job, JobArtifact, JobStatus, JobType
from loreg.db.session import is_postgres
from loreg.errors import Conflict, LoregError
from loreg.services import blobs, events

#: Job types whose outputs expire (``finish``): downloads, not registry content.
EXPIRING_OUTPUTS = (JobType.MERGE.value, JobType.EXPORT.value)


def _now() -> datetime:
    return datetime.now(UTC)


class LeaseLost(Conflict):
    """The worker no longer holds the job's lease: another attempt owns it now."""

    code = "lease_lost"


def rows_matched(result: Any) -> int:
    """Rows an UPDATE matched (``Session.execute`` is typed as returning a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)


def claim(
    session: Session,
    worker_id: str,
    *,
    lease_seconds: float,
    types: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Job | None:
    """Take the next queued job (highest priority, then oldest) under a lease, or ``None``.

    Marks it running and counts the attempt; the caller commits at once so that other
    workers see it taken.
    """
    now = now or _now()
    base = select(Job.id).where(Job.status == JobStatus.QUEUED.value)
    if types:
        base = base.where(Job.type.in_(list(types)))
    base = base.order_by(Job.priority.desc(), Job.created_at, Job.id)
    values = dict(
        status=JobStatus.RUNNING.value,
        lease_owner=worker_id,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        attempts=Job.attempts + 1,
        started_at=func.coalesce(Job.started_at, now),
        progress=0.0,
        progress_message="starting",
        updated_at=now,
    )
    if is_postgres(session):
        job_id = session.scalar(base.limit(1).with_for_update(skip_locked=True))
        if job_id is None:
            return None
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    else:
        job_id = None
        for candidate in session.scalars(base.limit(8)).all():
            won = rows_matched(
                session.execute(
                    update(Job)
                    .where(Job.id == candidate, Job.status == JobStatus.QUEUED.value)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            )
            if won == 1:
                job_id = candidate
                break
        if job_id is None:
            return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    return job


@dataclass(frozen=True)
class LeaseState:
    owned: bool  # False: the job is no longer ours (expired and re-claimed, or finished)
    cancel_requested: bool


def renew_lease(
    session: Session,
    job_id: str,
    worker_id: str,
    *,
    lease_seconds: float,
    now: datetime | None = None,
) -> LeaseState:
    """Push the lease expiry forward and report whether cancellation was asked for."""
    now = now or _now()
    owned = (
        rows_matched(
            session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.lease_owner == worker_id,
                    Job.status == JobStatus.RUNNING.value,
                )
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
        )
        == 1
    )
    return LeaseState(owned=owned, cancel_requested=cancel_requested(session, job_id))


def cancel_requested(session: Session, job_id: str) -> bool:
    """Whether someone asked to cancel the job (its worker polls this while it runs)."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def record_progress(
    session: Session, job_id: str, worker_id: str, progress: float, message: str = ""
) -> bool:
    """Write progress (clamped to 0..1); ``False`` if the lease is no longer ours."""
    value = min(1.0, max(0.0, float(progress)))
    return (
        rows_matched(
            session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.lease_owner == worker_id,
                    Job.status == JobStatus.RUNNING.value,
                )
                .values(progress=value, progress_message=message[:1000])
                .execution_options(synchronize_session=False)
            )
        )
        == 1
    )


def _lock_owned(session: Session, job_id: str, worker_id: str) -> Job:
    """The job row, locked on PostgreSQL, if this worker still holds its lease."""
    query = select(Job).where(Job.id == job_id)
    if is_postgres(session):
        query = query.with_for_update()
    job = session.scalar(query.execution_options(populate_existing=True))
    if job is None or job.status != JobStatus.RUNNING.value or job.lease_owner != worker_id:
        raise LeaseLost(
            f"job {job_id} is no longer leased to worker {worker_id}", details={"job_id": job_id}
        )
    return job


def _take_running(session: Session, job_id: str, worker_id: str, **values: Any) -> Job:
    """Move a job we hold out of ``running`` (conditional update: single writer wins)."""
    job = _lock_owned(session, job_id, worker_id)
    won = rows_matched(
        session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.lease_owner == worker_id,
                Job.status == JobStatus.RUNNING.value,
            )
            .values(lease_owner=None, lease_expires_at=None, updated_at=_now(), **values)
            .execution_options(synchronize_session=False)
        )
    )
    if won != 1:
        raise LeaseLost(
            f"job {job_id} is no longer leased to worker {worker_id}", details={"job_id": job_id}
        )
    session.refresh(job)
    return job


@dataclass(frozen=True)
class Artifact:
    path: str
    digest: str
    size: int


def finish(
    session: Session,
    job_id: str,
    worker_id: str,
    *,
    result: dict[str, Any],
    artifacts: Sequence[Artifact] = (),
    outputs_ttl: timedelta | None = None,
) -> Job:
    """Succeed: result, blobs and artifact rows in the caller's one transaction.

    The outputs of merge and export jobs expire ``outputs_ttl`` after now
    (``LOREG_JOB_OUTPUTS_EXPIRE_HOURS``; ``None``: never); then GC frees them and an
    identical submit runs the job again. ``LeaseLost`` if another attempt owns the job now:
    then nothing of ours is recorded.
    """
    now = _now()
    job = _take_running(
        session,
        job_id,
        worker_id,
        status=JobStatus.SUCCEEDED.value,
        result=result,
        error=None,
        progress=1.0,
        progress_message="done",
        finished_at=now,
    )
    for art in artifacts:
        ensure_blob(session, art.digest, art.size)
        session.add(
            JobArtifact(job_id=job.id, path=art.path, blob_digest=art.digest, size=art.size)
        )
    if artifacts and outputs_ttl is not None and job.type in EXPIRING_OUTPUTS:
        job.outputs_expire_at = now + outputs_ttl
    session.flush()
    return events.job_finished(session, job)


def ensure_blob(session: Session, digest: str, size: int) -> None:
    """Record a stored blob (idempotent, safe against a concurrent insert on PostgreSQL)."""
    if session.get(Blob, digest) is None:
        blobs.insert_blob_row(session, digest, size)


def error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, LoregError):
        return exc.to_dict()
    return {"code": "internal", "message": f"{type(exc).__name__}: {exc}"[:2000], "details": None}


def fail(
    session: Session,
    job_id: str,
    worker_id: str,
    error: dict[str, Any],
    *,
    retry: bool = False,
    count_attempt: bool = True,
) -> Job:
    """Record a failed attempt: back to the queue when ``retry`` and attempts remain,
    else ``failed`` with this error.

    ``count_attempt=False`` hands the job back without spending the attempt (its worker was
    stopped, or the database or store went away under it: not the job's fault), however
    many attempts it has had.
    """
    now = _now()
    job = _lock_owned(session, job_id, worker_id)
    if (
        retry
        and not job.cancel_requested
        and (not count_attempt or job.attempts < job.max_attempts)
    ):
        message = str(error.get("message", ""))
        if count_attempt:
            return _take_running(
                session,
                job_id,
                worker_id,
                status=JobStatus.QUEUED.value,
                error=error,
                progress=0.0,
                progress_message=f"retrying after: {message}"[:1000],
            )
        return _take_running(
            session,
            job_id,
            worker_id,
            status=JobStatus.QUEUED.value,
            error=error,
            progress=0.0,
            attempts=Job.attempts - 1,
            progress_message=f"handed back (not counted as an attempt): {message}"[:1000],
        )
    return events.job_finished(
        session,
        _take_running(
            session,
            job_id,
            worker_id,
            status=JobStatus.FAILED.value,
            error=error,
            finished_at=now,
            progress_message=str(error.get("message", "failed"))[:1000],
        ),
    )


def mark_cancelled(session: Session, job_id: str, worker_id: str) -> Job:
    return _take_running(
        session,
        job_id,
        worker_id,
        status=JobStatus.CANCELLED.value,
        finished_at=_now(),
        progress_message="cancelled",
    )


def requeue_expired(session: Session, *, now: datetime | None = None) -> list[str]:
    """Put running jobs whose lease expired back in the queue (or fail/cancel them).

    Returns the ids touched. Safe to run from every worker at once: each row moves under a
    conditional update on its old lease.
    """
    now = now or _now()
    query = (
        select(Job)
        .where(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
        .limit(100)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    touched: list[str] = []
    for job in session.scalars(query).all():
        owner = job.lease_owner
        lost = {
            "code": "lease_expired",
            "message": f"worker {owner} stopped renewing its lease (it died or stalled) "
            f"during attempt {job.attempts}",
            "details": {"worker": owner, "attempt": job.attempts},
        }
        values: dict[str, Any]
        message = str(lost["message"])
        if job.cancel_requested:
            values = dict(
                status=JobStatus.CANCELLED.value, finished_at=now, progress_message="cancelled"
            )
        elif job.attempts >= job.max_attempts:
            values = dict(
                status=JobStatus.FAILED.value,
                finished_at=now,
                error=lost,
                progress_message=f"gave up after {job.attempts} attempts: {message}"[:1000],
            )
        else:
            values = dict(
                status=JobStatus.QUEUED.value,
                error=lost,
                progress=0.0,
                progress_message="re-queued: " + message[:900],
            )
        moved = rows_matched(
            session.execute(
                update(Job)
                .where(
                    Job.id == job.id,
                    Job.status == JobStatus.RUNNING.value,
                    Job.lease_owner == owner,
                    Job.lease_expires_at < now,
                )
                .values(lease_owner=None, lease_expires_at=None, updated_at=now, **values)
                .execution_options(synchronize_session=False)
            )
        )
        if moved:
            touched.append(job.id)
            if values["status"] == JobStatus.FAILED.value:
                events.emit(
                    session,
                    events.JOB_FAILED,
                    job.namespace_id,
                    {**events.job_payload(job), **values, "status": "failed"},
                )
    return touched
