"""Accounts service: users, orgs, members, tokens, authentication, first start."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from loreg.api.bootstrap import credentials_path, ensure_admin
from loreg.config import Settings
from loreg.db.models import ApiToken, AuditEvent, Namespace, User
from loreg.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from loreg.services import accounts
from loreg.services.permissions import Principal


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: account rules, no dialect-specific SQL."""
    return sqlite_url


@pytest.fixture
def root(session: Session) -> Principal:
    created = accounts.bootstrap_admin(session)
    assert created is not None
    return accounts.authenticate(session, created[1])


def _login(session: Session, root: Principal, name: str, scope: str = "admin") -> Principal:
    user = accounts.create_user(session, root, name)
    _, value = accounts.create_token_for(session, root, user, "t", scope=scope)
    return accounts.authenticate(session, value)


def test_bootstrap_only_once(session: Session, root: Principal) -> None:
    assert root.username == "admin" and root.is_admin and root.scope == "admin"
    assert accounts.bootstrap_admin(session) is None


def test_tokens_are_stored_hashed(session: Session, root: Principal) -> None:
    token, value = accounts.create_token(session, root, "ci", scope="read")
    assert value.startswith("lrg_") and len(value) > 40
    assert token.token_hash == hashlib.sha256(value.encode()).hexdigest()
    stored = session.scalars(select(ApiToken)).all()
    assert all(value not in (t.token_hash, t.prefix, t.name) for t in stored)
    principal = accounts.authenticate(session, value)
    assert principal.scope == "read" and principal.token_id == token.id


def test_authenticate_refuses(session: Session, root: Principal) -> None:
    token, value = accounts.create_token(session, root, "x", expires_in_days=1)
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(Unauthenticated, match="expired"):
        accounts.authenticate(session, value, now=later)
    accounts.revoke_token(session, root, token.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        accounts.authenticate(session, value)
    for garbage in ("", "lrg_", "nope", "lrg_" + "a" * 300, "lrg_é"):
        with pytest.raises(Unauthenticated):
            accounts.authenticate(session, garbage)


def test_authenticating_only_reads_and_last_use_is_throttled(
    session: Session, root: Principal
) -> None:
    token, value = accounts.create_token(session, root, "x")
    session.commit()
    t0 = datetime.now(UTC)
    principal = accounts.authenticate(session, value, now=t0)
    assert not session.dirty and not session.new
    assert accounts.last_use_due(principal, t0)
    accounts.record_token_uses(session, {token.id: t0})
    session.commit()
    session.expire_all()
    principal = accounts.authenticate(session, value, now=t0 + timedelta(seconds=5))
    assert principal.last_used_at == t0
    assert not accounts.last_use_due(principal, t0 + timedelta(seconds=5))
    assert accounts.last_use_due(principal, t0 + timedelta(minutes=5))
    # a late writer never moves the time back
    accounts.record_token_uses(session, {token.id: t0 - timedelta(minutes=1)})
    session.commit()
    session.expire_all()
    assert session.get(ApiToken, token.id).last_used_at == t0  # type: ignore[union-attr]


def test_users_and_orgs_share_names(session: Session, root: Principal) -> None:
    alice = _login(session, root, "alice")
    with pytest.raises(Conflict):
        accounts.create_org(session, alice, "alice")
    org = accounts.create_org(session, alice, "acme")
    assert org.kind == "org"
    with pytest.raises(Conflict):
        accounts.create_user(session, root, "acme")
    with pytest.raises(PermissionDenied):
        accounts.create_user(session, alice, "mallory")
    with pytest.raises(InvalidInput):
        accounts.create_org(session, alice, "a..b")


def test_members(session: Session, root: Principal) -> None:
    alice = _login(session, root, "alice")
    bob = _login(session, root, "bob")
    accounts.create_org(session, alice, "acme")
    accounts.add_member(session, alice, "acme", "bob", "write")
    with pytest.raises(PermissionDenied):
        accounts.add_member(session, bob, "acme", "admin", "read")
    with pytest.raises(InvalidInput):
        accounts.add_member(session, alice, "acme", "bob", "owner")
    with pytest.raises(NotFound):
        accounts.add_member(session, alice, "acme", "ghost", "read")
    with pytest.raises(NotFound):
        accounts.add_member(session, alice, "bob", "alice", "read")  # a user, not an org
    with pytest.raises(Conflict):
        accounts.remove_member(session, alice, "acme", "alice")
    accounts.remove_member(session, bob, "acme", "bob")  # leaving
    with pytest.raises(NotFound):
        accounts.remove_member(session, alice, "acme", "bob")
    assert accounts.memberships_of(session, alice) == [("acme", "admin")]


def test_token_minting_cannot_escalate(session: Session, root: Principal) -> None:
    alice = _login(session, root, "alice", scope="write")
    with pytest.raises(PermissionDenied):
        accounts.create_token(session, alice, "x", scope="admin")
    _, value = accounts.create_token(session, alice, "ro", scope="read")
    ro = accounts.authenticate(session, value)
    with pytest.raises(PermissionDenied):
        accounts.create_token(session, ro, "y", scope="read")
    with pytest.raises(InvalidInput):
        accounts.create_token(session, alice, "z", expires_at=datetime(2000, 1, 1, tzinfo=UTC))


def test_every_write_is_audited(session: Session, root: Principal) -> None:
    before = session.scalar(select(func.count()).select_from(AuditEvent))
    alice = _login(session, root, "alice")  # user.create + token.create
    accounts.create_org(session, alice, "acme")
    accounts.add_member(session, alice, "acme", "admin", "read")
    token, _ = accounts.create_token(session, alice, "x")
    accounts.revoke_token(session, alice, token.id)
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[before:] == [
        "user.create",
        "token.create",
        "org.create",
        "org.member.set",
        "token.create",
        "token.revoke",
    ]


def test_ensure_admin_writes_credentials(tmp_path: Path, maker: sessionmaker[Session]) -> None:
    settings = Settings(home=tmp_path / "home", url="http://127.0.0.1:9999")
    token = ensure_admin(settings, maker)
    assert token is not None
    path = credentials_path(settings)
    assert json.loads(path.read_text()) == {"url": "http://127.0.0.1:9999", "token": token}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin(settings, maker) is None  # second start: nothing new
    with maker() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1
        assert s.scalar(select(Namespace.kind).where(Namespace.name == "admin")) == "user"
        assert accounts.authenticate(s, token).is_admin


def test_a_job_acts_as_its_submitter_with_the_scope_it_needs(session: Session) -> None:
    user = User(
        name="submitter", namespace=Namespace(name="submitter", kind="user"), is_admin=False
    )
    session.add(user)
    session.flush()
    actor = accounts.acting_user(session, user.id, scope="write")
    assert actor is not None
    assert (actor.user_id, actor.username, actor.namespace_id, actor.is_admin, actor.scope) == (
        user.id,
        "submitter",
        user.namespace_id,
        False,
        "write",
    )
    assert accounts.acting_user(session, None, scope="write") is None
    assert accounts.acting_user(session, user.id + 1000, scope="write") is None
