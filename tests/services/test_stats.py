"""The figures ``/metrics`` reports, read from rows written here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from loreg.db import Job, JobStatus, JobType, WorkerHeartbeat
from loreg.services import stats
from tests.factories.db import make_blob


def test_counts_durations_workers_and_blobs(session: Session) -> None:
    now = datetime.now(UTC)
    session.add_all(
        [
            Job(type=JobType.MERGE.value, status=JobStatus.QUEUED.value),
            Job(type=JobType.MERGE.value, status=JobStatus.QUEUED.value),
            Job(
                type=JobType.EXPORT.value,
                status=JobStatus.SUCCEEDED.value,
                started_at=now - timedelta(seconds=90),
                finished_at=now,
            ),
            Job(
                type=JobType.VALIDATE.value,
                status=JobStatus.RUNNING.value,
                lease_owner="w1",
                started_at=now,
                updated_at=now,
            ),
            WorkerHeartbeat(
                worker_id="w1",
                hostname="gpu-1",
                device="cuda",
                last_seen_at=now,
                current_job_id="x",
            ),
            WorkerHeartbeat(worker_id="w2", hostname="gpu-2", device="cpu", last_seen_at=now),
        ]
    )
    blobs = [make_blob(session, b"a" * 10), make_blob(session, b"b" * 32)]
    session.flush()

    fleet = stats.collect(session)
    assert len(fleet.jobs) == len(JobType) * len(JobStatus)  # every pair, zeros included
    assert fleet.jobs[("merge", "queued")] == 2 and fleet.queued("merge") == 2
    assert fleet.jobs[("combine", "failed")] == 0
    [duration] = fleet.job_durations[("export", "succeeded")]
    assert abs(duration - 90.0) < 1.0
    assert set(fleet.job_durations) == {("export", "succeeded")}  # finished jobs only
    assert {(w.worker_id, w.busy) for w in fleet.workers} == {("w1", True), ("w2", False)}
    assert abs(fleet.lease_renewals["w1"] - now.timestamp()) < 1.0
    assert fleet.deliveries == {"pending": 0, "delivered": 0, "failed": 0}
    assert (fleet.blobs, fleet.blob_bytes) == (2, sum(b.size for b in blobs))
