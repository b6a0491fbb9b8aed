"""Lineage: a combined version's parents recorded in input order, read back filtered by
what the reader may see."""

from __future__ import annotations

from sqlalchemy.orm import Session

from loreg.db import Visibility
from loreg.services import lineage
from loreg.services.permissions import Principal
from tests.factories.db import make_adapter, make_namespace, make_user, make_version


def test_recorded_parents_read_back_as_far_as_the_reader_may_see(session: Session) -> None:
    org = make_namespace(session)
    public = make_version(session, make_adapter(session, org, visibility=Visibility.PUBLIC))
    private = make_version(session, make_adapter(session, org))
    child = make_version(session, make_adapter(session, org, visibility=Visibility.PUBLIC))
    lineage.record(
        session,
        child.id,
        [(private.id, 0.25), (public.id, 0.75)],
        method="ties",
        params={"density": 0.5},
    )

    outsider = make_user(session)
    reader = Principal(
        user_id=outsider.id,
        username=outsider.name,
        namespace_id=outsider.namespace_id,
        is_admin=False,
        scope="read",
    )
    admin = Principal(
        user_id=outsider.id,
        username=outsider.name,
        namespace_id=outsider.namespace_id,
        is_admin=True,
        scope="admin",
    )
    shown, hidden = lineage.parents(session, admin, child)
    assert [(e.version.id, e.weight, e.method, e.position) for e in shown] == [
        (private.id, 0.25, "ties", 0),
        (public.id, 0.75, "ties", 1),
    ]
    assert hidden == 0
    shown, hidden = lineage.parents(session, reader, child)
    assert [e.version.id for e in shown] == [public.id] and hidden == 1
    children, _ = lineage.children(session, admin, public)
    assert [e.version.id for e in children] == [child.id]
