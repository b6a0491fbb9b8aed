"""The worker's periodic work: heartbeats, webhook deliveries, GC at most once per interval."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loreg.background.housekeeping import Housekeeping
from loreg.db import AuditEvent, Blob, WorkerHeartbeat
from loreg.digests import sha256_digest
from loreg.services import events, webhooks
from loreg.services.permissions import Principal
from loreg.storage import BlobStore, open_store_url
from tests.factories.db import make_namespace, make_user
from tests.fixtures.webhooks import LOOPBACK, Receiver


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return open_store_url(f"file://{tmp_path / 'blobs'}")


def test_tick_heartbeats_and_delivers(
    maker: sessionmaker[Session], store: BlobStore, receiver: Receiver
) -> None:
    with maker() as s:
        ns = make_namespace(s)
        s.commit()
        owner = make_user(s, is_admin=True)
        s.commit()
        admin = Principal(
            user_id=owner.id,
            username=owner.name,
            namespace_id=owner.namespace_id,
            is_admin=True,
            scope="admin",
        )
        webhooks.create(s, admin, ns.name, url=receiver.url, policy=LOOPBACK)
        events.emit(s, events.JOB_SUCCEEDED, ns, {"job_id": "j"})
        s.commit()
    hk = Housekeeping(maker, store, "w-1", "cpu", webhook_policy=LOOPBACK)
    hk.tick(current_job_id=None)
    with maker() as s:
        beat = s.get(WorkerHeartbeat, "w-1")
        assert beat is not None and beat.device == "cpu"
    assert len(receiver.requests) == 1
    # throttled: a second tick right away does nothing new
    hk.tick()
    assert len(receiver.requests) == 1


def test_scheduled_gc_runs_once_per_interval(
    maker: sessionmaker[Session], store: BlobStore
) -> None:
    old = b"unreferenced and old"
    digest = sha256_digest(old)
    store.put(digest, io.BytesIO(old))
    with maker() as s:
        s.add(Blob(digest=digest, size=len(old), created_at=datetime.now(UTC) - timedelta(days=3)))
        s.commit()
    hk = Housekeeping(maker, store, "w-1", gc_grace=timedelta(days=1))
    hk.tick()  # a fresh worker does not collect at once
    assert store.exists(digest)

    report = hk.gc_if_due()
    assert report is not None and [b["digest"] for b in report.blobs] == [digest]
    assert not store.exists(digest)
    assert hk.gc_if_due() is None  # ran less than a day ago (any worker)
    other = Housekeeping(maker, store, "w-2")
    assert other.gc_if_due() is None
    with maker() as s:
        runs = s.scalars(select(AuditEvent).where(AuditEvent.action == "gc.run")).all()
        assert len(runs) == 1 and runs[0].details["blobs"] == 1
        assert runs[0].details["by"] == "worker w-1"
