"""The authorisation matrix as plain functions: role x token scope x visibility."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from loreg.db.models import Adapter, Membership, Namespace, User
from loreg.errors import NotFound, PermissionDenied, Unauthenticated
from loreg.services import permissions as perm
from loreg.services.permissions import Level, Principal


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: plain functions over rows, no dialect-specific SQL."""
    return sqlite_url


def _user(session: Session, name: str, *, admin: bool = False) -> User:
    ns = Namespace(name=name, kind="user")
    session.add(ns)
    session.flush()
    user = User(name=name, namespace_id=ns.id, is_admin=admin)
    session.add(user)
    session.flush()
    return user


def _principal(user: User, scope: str) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.name,
        namespace_id=user.namespace_id,
        is_admin=user.is_admin,
        scope=scope,
        token_id=None,
    )


ROLES = [None, "read", "write", "admin"]
SCOPES = ["read", "write", "admin"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("visibility", ["private", "public"])
def test_matrix(session: Session, role: str | None, scope: str, visibility: str) -> None:
    org = Namespace(name="acme", kind="org")
    session.add(org)
    session.flush()
    adapter = Adapter(namespace_id=org.id, name="lora", visibility=visibility)
    session.add(adapter)
    user = _user(session, "u")
    if role is not None:
        session.add(Membership(namespace_id=org.id, user_id=user.id, role=role))
    session.flush()
    actor = _principal(user, scope)
    level = min(Level.of(role), Level.of(scope))

    assert perm.can_read_adapter(session, actor, adapter) == (
        visibility == "public" or level >= Level.READ
    )
    assert perm.can_write_adapter(session, actor, adapter) == (level >= Level.WRITE)
    assert perm.can_admin_adapter(session, actor, adapter) == (level >= Level.ADMIN)
    # anonymous: public reads only
    assert perm.can_read_adapter(session, None, adapter) == (visibility == "public")
    assert not perm.can_write_adapter(session, None, adapter)

    # the errors: outsiders never learn a private adapter exists
    if not perm.can_read_adapter(session, actor, adapter):
        with pytest.raises(NotFound):
            perm.require_write_adapter(session, actor, adapter)
    elif level < Level.WRITE:
        with pytest.raises(PermissionDenied):
            perm.require_write_adapter(session, actor, adapter)
    else:
        assert perm.require_write_adapter(session, actor, adapter) == actor
    with pytest.raises(NotFound if visibility == "private" else Unauthenticated):
        perm.require_write_adapter(session, None, adapter)


@pytest.mark.parametrize("scope", SCOPES)
def test_site_admin_capped_by_scope(session: Session, scope: str) -> None:
    org = Namespace(name="acme", kind="org")
    session.add(org)
    admin = _user(session, "root", admin=True)
    actor = _principal(admin, scope)
    assert perm.level_in(session, actor, org) == Level.of(scope)
    assert perm.is_site_admin(actor) == (scope == "admin")
    if scope == "admin":
        perm.require_site_admin(actor)
    else:
        with pytest.raises(PermissionDenied):
            perm.require_site_admin(actor)


def test_own_namespace_is_admin(session: Session) -> None:
    alice = _user(session, "alice")
    bob = _user(session, "bob")
    actor = _principal(alice, "admin")
    assert perm.role_in(session, actor, alice.namespace) == Level.ADMIN
    assert perm.role_in(session, actor, bob.namespace) == Level.NONE
    with pytest.raises(PermissionDenied):
        perm.require_write_namespace(session, actor, bob.namespace)
    with pytest.raises(PermissionDenied) as err:
        perm.require_write_namespace(session, _principal(alice, "read"), alice.namespace)
    assert err.value.details["required_scope"] == "write"
    with pytest.raises(Unauthenticated):
        perm.require_write_namespace(session, None, alice.namespace)


def test_site_admin_needs_admin_flag(session: Session) -> None:
    with pytest.raises(PermissionDenied):
        perm.require_site_admin(_principal(_user(session, "joe"), "admin"))
    with pytest.raises(Unauthenticated):
        perm.require_site_admin(None)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("scope", SCOPES)
def test_readable_namespace_ids_agrees_with_can_read_namespace(
    session: Session, role: str | None, scope: str
) -> None:
    org = Namespace(name="acme", kind="org")
    other = Namespace(name="other", kind="org")
    session.add_all([org, other])
    user = _user(session, "u")
    if role is not None:
        session.add(Membership(namespace=org, user=user, role=role))
    session.flush()
    actor = _principal(user, scope)
    ids = perm.readable_namespace_ids(session, actor)
    assert ids is not None
    for ns in (org, other, user.namespace):
        assert (ns.id in ids) == perm.can_read_namespace(session, actor, ns), ns.name
    assert perm.readable_namespace_ids(session, None) == set()
    admin = _principal(_user(session, "root", admin=True), scope)
    assert perm.readable_namespace_ids(session, admin) is None  # every namespace
