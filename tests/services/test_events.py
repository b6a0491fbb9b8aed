"""The outbox: an event exists exactly when the transaction that emitted it commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from loreg.db import Job, WebhookEvent, create_engine_for, make_sessionmaker
from loreg.errors import InvalidInput
from loreg.services import events, job_queue
from loreg.worker.loop import Worker
from tests.factories.db import make_adapter, make_namespace, make_version
from tests.factories.pushes import build_models, push, register_base
from tests.fixtures.api import RegistryServer, unique_name


def _count(maker: sessionmaker[Session]) -> int:
    with maker() as s:
        return int(s.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


def test_event_commits_with_the_change(maker: sessionmaker[Session]) -> None:
    with maker() as s:
        ns = make_namespace(s)
        version = make_version(s, make_adapter(s, ns))
        event = events.emit(s, events.VERSION_CREATED, ns, events.version_payload(version))
        s.commit()
        event_id = event.id
    with maker() as s:
        stored = s.get(WebhookEvent, event_id)
        assert stored is not None
        assert stored.type == "version.created"
        assert stored.dispatched_at is None
        assert stored.payload["ref"] == f"{ns.name}/{version.adapter.name}@1"
        assert stored.payload["digest"] == version.digest
        assert isinstance(stored.payload["created_at"], str)


def test_rollback_leaves_no_event(maker: sessionmaker[Session]) -> None:
    with maker() as s:
        ns = make_namespace(s)
        s.commit()
    with maker() as s:
        version = make_version(s, make_adapter(s, s.merge(ns)))
        events.emit(
            s, events.VERSION_CREATED, version.adapter.namespace, events.version_payload(version)
        )
        s.rollback()
    assert _count(maker) == 0


def test_namespace_by_name_or_id_and_unknown_types(maker: sessionmaker[Session]) -> None:
    with maker() as s:
        ns = make_namespace(s)
        a = events.emit(s, events.JOB_FAILED, ns.name, {"job_id": "x"})
        b = events.emit(s, events.JOB_SUCCEEDED, ns.id, {"job_id": "y"})
        assert a.namespace_id == b.namespace_id == ns.id
        with pytest.raises(InvalidInput):
            events.emit(s, "version.exploded", ns, {})
        with pytest.raises(InvalidInput):
            events.emit(s, events.TAG_MOVED, "no-such-namespace", {})
        s.commit()
    assert _count(maker) == 2


def test_job_failure_emits_job_failed(maker: sessionmaker[Session]) -> None:
    with maker() as s:
        ns = make_namespace(s)
        job = Job(type="merge", params={}, namespace_id=ns.id, max_attempts=1)
        s.add(job)
        s.commit()
        claimed = job_queue.claim(s, "w-1", lease_seconds=60, types=["merge"])
        s.commit()
        assert claimed is not None and claimed.id == job.id
        job_queue.fail(s, job.id, "w-1", {"code": "boom", "message": "it broke", "details": None})
        s.commit()
    with maker() as s:
        [event] = s.scalars(select(WebhookEvent)).all()
        assert event.type == "job.failed" and event.namespace_id == ns.id
        assert event.payload["job_id"] == job.id and event.payload["error"]["code"] == "boom"


def test_push_and_validation_emit_their_events(
    registry_server: RegistryServer, tmp_path: Path
) -> None:
    """Over HTTP: a push emits version.created and tag.moved; the validation job then emits
    version.validated and job.succeeded (written by the worker's finishing transaction)."""
    models = build_models(tmp_path / "models")
    owner = registry_server.make_user()
    org = registry_server.make_org(owner)
    client = registry_server.client(owner.token)
    base = "test/" + unique_name("Tiny-Llama")
    assert register_base(client, models.base, base).status_code == 201
    r = push(client, models.adapter.path, f"{org}/tiny", base=base, tags=["prod"])
    assert r.status_code == 201, r.text
    worker = Worker(registry_server.settings, device="cpu")
    try:
        worker.run(once=True)
    finally:
        worker.close()
    engine = create_engine_for(registry_server.settings.effective_database_url)
    try:
        with make_sessionmaker(engine)() as s:
            found: list[tuple[str, Any]] = [
                (e.type, e.payload.get("tag"))
                for e in s.scalars(select(WebhookEvent).order_by(WebhookEvent.created_at))
            ]
    finally:
        engine.dispose()
    types = [t for t, _tag in found]
    assert types.count("version.created") == 1
    assert sorted(tag for t, tag in found if t == "tag.moved") == ["latest", "prod"]
    assert types.count("version.validated") == 1 and types.count("job.succeeded") == 1
    assert types.index("version.created") < types.index("version.validated")
