"""The outbox: an event exists exactly when the transaction that emitted it commits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from registry.db import WebhookEvent, create_engine_for, make_sessionmaker
from registry.db.migrate import upgrade
from registry.errors import InvalidInput
from registry.services import events
from tests.factories.db import make_adapter, make_namespace, make_version


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'loreg.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    eng = create_engine_for(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def maker(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


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
        events.emit(s, events.VERSION_CREATED, version.adapter.namespace,
                    events.version_payload(version))
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
