"""The database itself enforces the schema's rules, not only Python code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from loreg.db import (
    Adapter,
    AdapterVersion,
    Base,
    Blob,
    Job,
    JobStatus,
    Namespace,
    Tag,
    VersionFile,
    VersionTargetModule,
)
from tests.factories.db import make_adapter, make_blob, make_namespace, make_user, make_version


def test_rows_round_trip_with_relationships(session: Session) -> None:
    user = make_user(session, "alice")
    adapter = make_adapter(session, user.namespace, "chat", created_by=user)
    v1 = make_version(session, adapter, labels={"dataset": "alpaca"}, created_by=user)
    blob = make_blob(session, b"tensor bytes")
    v1.files.append(VersionFile(path="adapter_model.safetensors", blob_digest=blob.digest, size=12))
    session.add(Tag(adapter=adapter, name="latest", version=v1, updated_by=user.id))
    session.commit()
    session.expunge_all()

    found = session.scalars(
        select(AdapterVersion)
        .join(VersionTargetModule)
        .where(VersionTargetModule.module == "q_proj")
    ).one()
    assert found.adapter.namespace.name == "alice"
    assert found.adapter.tags[0].name == "latest"
    assert [f.path for f in found.files] == ["adapter_model.safetensors"]
    assert found.labels == {"dataset": "alpaca"}
    assert found.validation_state == "pending"
    assert found.created_at.tzinfo is not None
    assert found.created_at.utcoffset() == timedelta(0)


def test_duplicate_version_number_is_refused(session: Session) -> None:
    adapter = make_adapter(session, make_namespace(session))
    make_version(session, adapter, number=1)
    session.commit()
    with pytest.raises(IntegrityError):
        make_version(session, adapter, number=1)


def test_duplicate_version_digest_is_refused(session: Session) -> None:
    adapter = make_adapter(session, make_namespace(session))
    v1 = make_version(session, adapter)
    session.commit()
    with pytest.raises(IntegrityError):
        make_version(session, adapter, digest=v1.digest)


def test_duplicate_tag_is_refused(session: Session) -> None:
    adapter = make_adapter(session, make_namespace(session))
    v1, v2 = make_version(session, adapter), make_version(session, adapter)
    session.execute(
        insert(Tag).values(
            adapter_id=adapter.id,
            name="prod",
            version_id=v1.id,
            protected=False,
            updated_at=datetime.now(UTC),
        )
    )
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(
            insert(Tag).values(
                adapter_id=adapter.id,
                name="prod",
                version_id=v2.id,
                protected=False,
                updated_at=datetime.now(UTC),
            )
        )


def test_duplicate_adapter_name_in_namespace_is_refused(session: Session) -> None:
    ns, other = make_namespace(session), make_namespace(session)
    make_adapter(session, ns, "same")
    make_adapter(session, other, "same")  # another namespace: fine
    session.commit()
    with pytest.raises(IntegrityError):
        make_adapter(session, ns, "same")


def test_duplicate_namespace_name_is_refused(session: Session) -> None:
    make_namespace(session, "acme")
    session.commit()
    with pytest.raises(IntegrityError):
        make_namespace(session, "acme")


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        (AdapterVersion, "validation_state", "maybe"),
        (Job, "status", "exploded"),
        (Job, "type", "bake"),
        (Namespace, "kind", "team"),
        (Adapter, "visibility", "secret"),
    ],
)
def test_check_constraints_refuse_unknown_states(
    session: Session, table: type[Base], column: str, value: str
) -> None:
    """Core UPDATEs bypass every Python-side check: only the database can refuse them."""
    adapter = make_adapter(session, make_namespace(session))
    version = make_version(session, adapter)
    job = Job(type="validate", params={"version_id": version.id})
    session.add(job)
    session.commit()
    row_id = {
        AdapterVersion: version.id,
        Job: job.id,
        Namespace: adapter.namespace_id,
        Adapter: adapter.id,
    }[table]
    with pytest.raises(IntegrityError):
        session.execute(
            update(table).where(table.id == row_id).values({column: value})  # type: ignore[attr-defined]
        )


def test_job_defaults_and_claim_columns(session: Session) -> None:
    job = Job(type="merge", params={"adapters": []})
    session.add(job)
    session.commit()
    assert len(job.id) == 32
    assert job.status == JobStatus.QUEUED
    assert (job.attempts, job.priority, job.progress, job.cancel_requested) == (0, 0, 0.0, False)


def test_foreign_keys_are_enforced(session: Session) -> None:
    adapter = make_adapter(session, make_namespace(session))
    version = make_version(session, adapter)
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(
            insert(VersionFile).values(
                version_id=version.id, path="x", blob_digest="sha256:" + "f" * 64, size=1
            )
        )


def test_blob_in_use_cannot_be_deleted_but_versions_cascade(session: Session) -> None:
    adapter = make_adapter(session, make_namespace(session))
    version = make_version(session, adapter)
    blob = make_blob(session)
    session.add(VersionFile(version_id=version.id, path="a", blob_digest=blob.digest, size=1))
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(delete(Blob).where(Blob.digest == blob.digest))
    session.rollback()

    session.execute(delete(Adapter).where(Adapter.id == adapter.id))  # DB-level cascade
    session.commit()
    assert session.scalar(select(VersionFile).where(VersionFile.path == "a")) is None
    session.execute(delete(Blob).where(Blob.digest == blob.digest))
    session.commit()


def test_timestamps_are_utc_aware_and_naive_ones_refused(session: Session) -> None:
    ns = make_namespace(session)
    plus2 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    ns.created_at = plus2
    session.commit()
    session.expunge_all()
    loaded = session.get(Namespace, ns.id)
    assert loaded is not None
    assert loaded.created_at == plus2
    assert loaded.created_at.tzinfo == UTC
    assert loaded.created_at.hour == 10

    loaded.created_at = datetime(2025, 1, 1)  # naive
    with pytest.raises(StatementError):
        session.commit()
