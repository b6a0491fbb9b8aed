"""Web UI sessions on both databases: the cookie's id maps to a token, never is one; signing
out, expiry and revoking the token each end it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db import UiSession
from loreg.errors import Unauthenticated
from loreg.services import accounts, ui_sessions
from tests.factories.db import make_user

HOUR = timedelta(hours=1)


def _signed_in(session: Session) -> tuple[str, str, int]:
    """A user's token value, a session id started with it, and the token id."""
    user = make_user(session)
    token, value = accounts._issue_token(session, user, "t", "write", None)
    principal = accounts.authenticate(session, value)
    return value, ui_sessions.start(session, principal, lifetime=HOUR), token.id


def test_session_stands_for_its_token_and_stores_only_a_hash(session: Session) -> None:
    token, sid, token_id = _signed_in(session)
    assert sid.startswith("lrs_") and token not in sid
    principal = ui_sessions.authenticate(session, sid)
    assert principal.token_id == token_id and principal.scope == "write"
    [row] = session.scalars(select(UiSession)).all()
    assert row.id_hash != sid and sid not in row.id_hash
    with pytest.raises(Unauthenticated):
        ui_sessions.authenticate(session, token)  # a token is no session id
    with pytest.raises(Unauthenticated):
        ui_sessions.authenticate(session, "lrs_" + "x" * 43)


def test_sign_out_expiry_and_revocation_end_it(session: Session) -> None:
    _token, sid, token_id = _signed_in(session)
    assert ui_sessions.end(session, sid)
    assert not ui_sessions.end(session, sid)
    with pytest.raises(Unauthenticated):
        ui_sessions.authenticate(session, sid)

    _token, sid, _ = _signed_in(session)
    later = datetime.now(UTC) + 2 * HOUR
    with pytest.raises(Unauthenticated):
        ui_sessions.authenticate(session, sid, now=later)

    token, sid, token_id = _signed_in(session)
    principal = accounts.authenticate(session, token)
    accounts.revoke_token(session, principal, token_id)
    with pytest.raises(Unauthenticated, match="revoked"):
        ui_sessions.authenticate(session, sid)


def test_old_sessions_are_dropped_at_the_next_sign_in(session: Session) -> None:
    _t, sid, _ = _signed_in(session)
    ui_sessions.end(session, sid, now=datetime.now(UTC) - 3 * HOUR)
    _signed_in(session)
    assert len(session.scalars(select(UiSession)).all()) == 1
