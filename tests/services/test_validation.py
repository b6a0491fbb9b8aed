"""The validation job's reads and writes: what a version was pushed against, and its
outcome recorded with its event."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db import AdapterVersion, BaseModelRecord, WebhookEvent
from loreg.services import validation
from tests.factories.db import make_adapter, make_namespace, make_version


def test_what_a_version_was_pushed_against(session: Session) -> None:
    base = BaseModelRecord(
        name="org/tiny",
        fingerprint="sha256:" + "f0" * 32,
        structure_hash="sha256:" + "e0" * 32,
        manifest={"w.weight": ["F32", [4, 4]]},
        num_parameters=16,
        size_bytes=64,
    )
    session.add(base)
    session.flush()
    org = make_namespace(session)
    pushed = make_version(
        session,
        make_adapter(session, org),
        base_model_id=base.id,
        compatibility_report={"match_hint": "exact"},
    )
    bare = make_version(session, make_adapter(session, org))

    found = validation.pushed_against(session, pushed.id)
    assert found.manifest is not None and set(found.manifest.tensors) == {"w.weight"}
    assert found.report == {"match_hint": "exact"}
    assert validation.pushed_against(session, bare.id) == validation.PushedAgainst(None, {})
    assert validation.pushed_against(session, bare.id + 1000).manifest is None


def test_the_outcome_is_recorded_with_its_event(session: Session) -> None:
    version = make_version(session, make_adapter(session, make_namespace(session)))
    report = {"state": "invalid", "problems": [{"code": "non_finite"}]}
    validation.record(session, version.id, "invalid", report)
    validation.record(session, version.id + 1000, "valid", {})  # gone meanwhile: no-op
    session.flush()
    stored = session.get(AdapterVersion, version.id)
    assert stored is not None
    assert (stored.validation_state, stored.validation_report) == ("invalid", report)
    types = list(session.scalars(select(WebhookEvent.type)))
    assert types == ["version.validated"]
