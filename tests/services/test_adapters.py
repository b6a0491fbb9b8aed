"""The push service on SQLite and PostgreSQL: a push that loses a race is run again, and
undoes only its own writes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from loreg.db import Adapter, AdapterVersion, Namespace, WebhookEvent
from loreg.errors import Conflict
from loreg.formats.base import fingerprint, folder_config
from loreg.services import adapters, bases, blobs, events
from loreg.services.manifests import FileEntry
from loreg.services.permissions import Principal
from loreg.storage.local import LocalBlobStore
from tests.factories import make_llama, make_lora_adapter
from tests.factories.db import make_namespace, make_user


@dataclass
class Pushable:
    store: LocalBlobStore
    admin: Principal
    org: str
    files: list[FileEntry]


def _upload(
    session: Session, store: LocalBlobStore, admin: Principal, folder: Path
) -> list[FileEntry]:
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        size = store.put_file(digest, path)
        blobs.record_blob(session, admin, digest, size)
        entries.append(FileEntry(path.relative_to(folder).as_posix(), digest, size))
    return entries


@pytest.fixture
def pushable(maker: sessionmaker[Session], tmp_path: Path) -> Pushable:
    """A registered base with its files and an uploaded adapter, not yet pushed."""
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter", r=4)
    store = LocalBlobStore(tmp_path / "blobs")
    with maker() as s:
        user = make_user(s, is_admin=True)
        admin = Principal(
            user_id=user.id,
            username=user.name,
            namespace_id=user.namespace_id,
            is_admin=True,
            scope="admin",
        )
        org = make_namespace(s).name
        manifest = fingerprint(base.path)
        assert manifest.fingerprint is not None
        bases.register_base(
            s,
            admin,
            bases.BaseSpec(
                name="org/tiny",
                tensors=manifest.tensors,
                fingerprint=manifest.fingerprint,
                files=_upload(s, store, admin, base.path),
                config=folder_config(base.path),
            ),
        )
        files = _upload(s, store, admin, adapter.path)
        s.commit()
    return Pushable(store, admin, org, files)


def _lose_races(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The first ``times`` attempts hit a real constraint violation where the adapter row
    is written (what a concurrent first push causes); returns the attempts made."""
    real: Callable[..., Any] = adapters._create_or_lock_adapter
    attempts: list[int] = []

    def racing(session: Session, *args: Any, **kwargs: Any) -> Any:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= times:
            taken = session.scalars(select(Namespace.name).limit(1)).one()
            session.execute(insert(Namespace).values(name=taken, kind="org"))
        return real(session, *args, **kwargs)

    monkeypatch.setattr(adapters, "_create_or_lock_adapter", racing)
    monkeypatch.setattr(adapters, "PUSH_BACKOFF", 0.0)
    return attempts


def _push(s: Session, p: Pushable) -> adapters.PushOutcome:
    return adapters.push_version(
        s, p.store, p.admin, p.org, "raced", adapters.PushSpec(files=p.files, base="org/tiny")
    )


def _count(s: Session, model: type[Any]) -> int:
    return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("caller_wrote_first", [True, False])
def test_a_push_that_loses_a_race_runs_again(
    maker: sessionmaker[Session],
    pushable: Pushable,
    monkeypatch: pytest.MonkeyPatch,
    caller_wrote_first: bool,
) -> None:
    attempts = _lose_races(monkeypatch, 2)
    with maker() as s:
        if caller_wrote_first:  # as a combine job's finish does before its push
            events.emit(s, events.JOB_FAILED, pushable.org, {"job_id": "before-the-push"})
        outcome = _push(s, pushable)
        s.commit()
        assert outcome.created and outcome.version.number == 1
    assert attempts == [1, 2, 3]
    with maker() as s:
        assert _count(s, Adapter) == 1 and _count(s, AdapterVersion) == 1
        emitted = [e.type for e in s.scalars(select(WebhookEvent))]
        assert emitted.count("version.created") == 1
        assert ("job.failed" in emitted) == caller_wrote_first  # the caller's write stayed


def test_a_push_that_keeps_losing_gives_up_with_a_conflict(
    maker: sessionmaker[Session],
    pushable: Pushable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = _lose_races(monkeypatch, adapters.PUSH_ATTEMPTS)
    with maker() as s:
        events.emit(s, events.JOB_FAILED, pushable.org, {"job_id": "before-the-push"})
        with pytest.raises(adapters.ConcurrentPush) as err:
            _push(s, pushable)
        assert isinstance(err.value, Conflict) and "concurrently" in err.value.message
        s.commit()  # the caller's own write is still there to commit
    assert len(attempts) == adapters.PUSH_ATTEMPTS
    with maker() as s:
        assert _count(s, Adapter) == 0 and _count(s, AdapterVersion) == 0
        assert [e.type for e in s.scalars(select(WebhookEvent))] == ["job.failed"]


@pytest.mark.parametrize("lost_races", [0, 1])
def test_the_caller_ends_the_transaction(
    maker: sessionmaker[Session],
    pushable: Pushable,
    monkeypatch: pytest.MonkeyPatch,
    lost_races: int,
) -> None:
    """However the push ran (at once, or again after a lost race), nothing is committed
    until the caller commits: a rollback leaves no trace of it."""
    _lose_races(monkeypatch, lost_races)
    with maker() as s:
        assert _push(s, pushable).created
        s.rollback()
    with maker() as s:
        assert _count(s, Adapter) == 0 and _count(s, AdapterVersion) == 0
        assert _count(s, WebhookEvent) == 0
