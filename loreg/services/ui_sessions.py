"""Web UI sign-in sessions: the browser holds a random session id, never the API token.

Signing in with a token creates a session (``UiSession``: the id's SHA-256 -> the token);
the cookie carries the id. Every request looks the session up and then checks the token
itself (revoked, expired, account disabled), so revoking the token signs every browser out
that used it. Signing out revokes the session at once; a stolen cookie is worth nothing
after that, and a stolen cookie never reveals the token.

Nothing here commits: the route ends the transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from loreg.db.access import UiSession
from loreg.db.models import ApiToken, User
from loreg.errors import Unauthenticated
from loreg.services.accounts import principal_of
from loreg.services.permissions import Principal

SESSION_PREFIX = "lrs_"
MAX_SESSION_ID_LENGTH = 128


def _now() -> datetime:
    return datetime.now(UTC)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def _well_formed(value: str) -> bool:
    return (
        value.startswith(SESSION_PREFIX) and len(value) <= MAX_SESSION_ID_LENGTH and value.isascii()
    )


def start(
    session: Session, principal: Principal, *, lifetime: timedelta, now: datetime | None = None
) -> str:
    """A new session for a principal that just authenticated with a token; returns the id
    to put in the cookie (shown once: only its hash is stored). Also drops sessions that
    ended long ago."""
    if principal.token_id is None:
        raise Unauthenticated("sign in with an API token")
    now = now or _now()
    session.execute(
        delete(UiSession)
        .where(or_(UiSession.expires_at < now, UiSession.revoked_at < now - lifetime))
        .execution_options(synchronize_session=False)
    )
    value = SESSION_PREFIX + secrets.token_urlsafe(32)
    session.add(
        UiSession(
            id_hash=_hash(value),
            token_id=principal.token_id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return value


def authenticate(session: Session, value: str, *, now: datetime | None = None) -> Principal:
    """The principal of a live session (its token still good), else ``Unauthenticated``."""
    now = now or _now()
    if not _well_formed(value):
        raise Unauthenticated("not signed in")
    row = session.execute(
        select(UiSession, ApiToken, User)
        .join(ApiToken, ApiToken.id == UiSession.token_id)
        .join(User, User.id == ApiToken.user_id)
        .where(UiSession.id_hash == _hash(value))
    ).first()
    if row is None:
        raise Unauthenticated("not signed in")
    ui_session, token, user = row
    if ui_session.revoked_at is not None or ui_session.expires_at <= now:
        raise Unauthenticated("the sign-in has ended; sign in again")
    return principal_of(token, user, now=now)


def end(session: Session, value: str, *, now: datetime | None = None) -> bool:
    """Revoke a session (sign out); whether there was a live one."""
    if not _well_formed(value):
        return False
    row = session.get(UiSession, _hash(value))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now or _now()
    session.flush()
    return True
