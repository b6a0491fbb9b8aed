"""The job queue on SQLite and PostgreSQL: claim under contention, leases, expiry and
re-queueing, finishing, failing and handing back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loreg.db import Blob, Job, JobArtifact
from loreg.services import job_queue

DIGEST = "sha256:" + "ab" * 32


def _queue(maker: sessionmaker[Session], n: int, **kw: object) -> list[str]:
    ids = []
    with maker() as s:
        t0 = datetime.now(UTC)
        for i in range(n):
            job = Job(
                type="validate", params={"i": i}, created_at=t0 + timedelta(milliseconds=i), **kw
            )
            s.add(job)
            s.flush()
            ids.append(job.id)
        s.commit()
    return ids


def test_claim_order_priority_then_age(maker: sessionmaker[Session]) -> None:
    old, new = _queue(maker, 2)
    (urgent,) = _queue(maker, 1, priority=5)
    got = []
    with maker() as s:
        while (job := job_queue.claim(s, "w", lease_seconds=30)) is not None:
            s.commit()
            got.append(job.id)
            assert job.status == "running" and job.attempts == 1 and job.lease_owner == "w"
    assert got == [urgent, old, new]


def test_concurrent_claimers_each_job_once(maker: sessionmaker[Session]) -> None:
    ids = _queue(maker, 10)
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        with maker() as s:
            while True:
                job = job_queue.claim(s, name, lease_seconds=30)
                s.commit()
                if job is None:
                    return
                with lock:
                    claimed.append((name, job.id))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j for _, j in claimed) == sorted(ids)


def test_lease_expiry_requeues_then_fails(maker: sessionmaker[Session]) -> None:
    (job_id,) = _queue(maker, 1, max_attempts=2)
    with maker() as s:
        assert job_queue.claim(s, "w1", lease_seconds=30) is not None
        s.commit()
        assert job_queue.requeue_expired(s) == []  # still leased
        later = datetime.now(UTC) + timedelta(seconds=31)
        assert job_queue.requeue_expired(s, now=later) == [job_id]
        s.commit()
        job = s.get(Job, job_id, populate_existing=True)
        assert job is not None and job.status == "queued" and job.lease_owner is None
        assert job.error is not None and job.error["code"] == "lease_expired"
        # the stale worker can no longer write
        assert not job_queue.record_progress(s, job_id, "w1", 0.5)
        assert not job_queue.renew_lease(s, job_id, "w1", lease_seconds=30).owned
        with pytest.raises(job_queue.LeaseLost):
            job_queue.finish(s, job_id, "w1", result={})
        s.rollback()
        job = job_queue.claim(s, "w2", lease_seconds=30)
        assert job is not None and job.attempts == 2
        s.commit()
        assert job_queue.requeue_expired(s, now=later + timedelta(seconds=31)) == [job_id]
        s.commit()
        job = s.get(Job, job_id, populate_existing=True)
        assert job is not None and job.status == "failed" and job.attempts == 2
        assert job.error is not None and "w2" in job.error["message"]


def test_finish_records_artifacts_in_one_transaction(maker: sessionmaker[Session]) -> None:
    (job_id,) = _queue(maker, 1)
    with maker() as s:
        job_queue.claim(s, "w", lease_seconds=30)
        s.commit()
        assert job_queue.record_progress(s, job_id, "w", 0.4, "halfway")
        s.commit()
        job_queue.finish(
            s,
            job_id,
            "w",
            result={"ok": True},
            artifacts=[job_queue.Artifact("out/model.safetensors", DIGEST, 4)],
        )
        s.commit()
    with maker() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "succeeded" and job.progress == 1.0
        assert job.result == {"ok": True} and job.lease_owner is None
        rows = s.scalars(select(JobArtifact)).all()
        assert [(r.path, r.blob_digest) for r in rows] == [("out/model.safetensors", DIGEST)]
        assert s.get(Blob, DIGEST) is not None


def test_validate_outputs_never_expire(maker: sessionmaker[Session]) -> None:
    (job_id,) = _queue(maker, 1)
    with maker() as s:
        job_queue.claim(s, "w", lease_seconds=30)
        done = job_queue.finish(
            s,
            job_id,
            "w",
            result={},
            outputs_ttl=timedelta(days=7),
            artifacts=[job_queue.Artifact("report.json", DIGEST, 4)],
        )
        s.commit()
        assert done.outputs_expire_at is None


def test_fail_retries_then_gives_up(maker: sessionmaker[Session]) -> None:
    (job_id,) = _queue(maker, 1, max_attempts=2)
    with maker() as s:
        job_queue.claim(s, "w", lease_seconds=30)
        job = job_queue.fail(
            s, job_id, "w", {"code": "unavailable", "message": "s3 down"}, retry=True
        )
        s.commit()
        assert job.status == "queued"
        job_queue.claim(s, "w", lease_seconds=30)
        job = job_queue.fail(
            s, job_id, "w", {"code": "unavailable", "message": "s3 down"}, retry=True
        )
        s.commit()
        assert job.status == "failed" and job.attempts == 2
        assert job.error == {"code": "unavailable", "message": "s3 down"}


def test_an_uncounted_hand_back_does_not_spend_an_attempt(maker: sessionmaker[Session]) -> None:
    """A job handed back because of an outage goes back to the queue even on its last
    attempt, and the attempt is not counted."""
    (job_id,) = _queue(maker, 1, max_attempts=1)
    outage = {"code": "database_unavailable", "message": "the database went away"}
    with maker() as s:
        for _ in range(3):
            assert job_queue.claim(s, "w", lease_seconds=30) is not None
            job = job_queue.fail(s, job_id, "w", outage, retry=True, count_attempt=False)
            s.commit()
            assert job.status == "queued" and job.attempts == 0
            assert job.progress_message.startswith("handed back (not counted")
        job_queue.claim(s, "w", lease_seconds=30)
        job = job_queue.fail(s, job_id, "w", {"code": "x", "message": "bad input"})
        s.commit()
        assert job.status == "failed" and job.attempts == 1
