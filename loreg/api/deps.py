"""FastAPI dependencies: settings, a DB session per request, the blob store, the caller.

Use them as ``Annotated`` types in route signatures::

    def route(session: SessionDep, user: CurrentUser) -> ...:
        thing = service.do(session, user, ...)
        session.commit()

Transactions end at the request boundary: the route commits explicitly when it is done;
if anything raises, the session is rolled back and closed. Authentication reads in the
request's session and writes nothing (a token's last use is recorded off the request path,
``loreg.api.usage``). Dependencies that do no I/O are ``async``: a sync dependency costs a
hop through the thread pool on every request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from loreg.api.usage import TokenUses
from loreg.config import Settings
from loreg.errors import Unauthenticated
from loreg.services import accounts
from loreg.services.permissions import Principal
from loreg.storage import BlobStore

log = logging.getLogger("loreg.api")

#: Documents the scheme in OpenAPI; the header itself is parsed in ``get_optional_user``.
bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="lrg_...",
    description="An API token: `Authorization: Bearer lrg_...`",
)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    maker: sessionmaker[Session] = request.app.state.sessionmaker
    return maker


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request, shared by authentication and the route (FastAPI caches it
    per request), so a request is one transaction; rolled back on error, closed at the end,
    never auto-committed.

    Creating a session does no I/O (it connects on its first query, in the route's worker
    thread), so this runs on the event loop; only a session that still holds a connection
    at the end is closed in a worker thread.
    """
    session = get_sessionmaker(request)()
    try:
        yield session
    except BaseException:
        await _close(session, rollback=True)
        raise
    else:
        await _close(session, rollback=False)


async def _close(session: Session, *, rollback: bool) -> None:
    def close() -> None:
        if rollback:
            session.rollback()
        session.close()

    if session.in_transaction():
        await run_in_threadpool(close)
    else:
        close()


async def get_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.store
    return store


def get_request_id(request: Request) -> str:
    rid: str | None = getattr(request.state, "request_id", None)
    return rid or ""


async def _request_id(request: Request) -> str:
    return get_request_id(request)


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return value


async def get_optional_user(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal | None:
    """The caller, or ``None`` when no token was sent. A bad token is a 401, never anonymous.

    The lookup runs in the request's own session (its first query), in a worker thread;
    an anonymous request costs no thread and no query here.
    """
    value = _bearer_token(request)
    if value is None:
        return None
    return await run_in_threadpool(authenticate_in, request, session, value)


def authenticate_token(request: Request, value: str) -> Principal:
    """The principal a token value stands for (``Unauthenticated`` if none), in a short
    session of its own; for callers outside a request's session (the UI's sign-in)."""
    with get_sessionmaker(request)() as session:
        return authenticate_in(request, session, value)


def authenticate_in(request: Request, session: Session | Connection, value: str) -> Principal:
    """``authenticate_token`` in a given session: a pure read. A token whose last recorded
    use is over a minute old is noted for the background writer (``loreg.api.usage``)."""
    principal = accounts.authenticate(session, value)
    note_use(request, principal)
    return principal.with_request_id(get_request_id(request) or None)


def note_use(request: Request, principal: Principal) -> None:
    """Note a use of the principal's token, to be written off the request path."""
    now = datetime.now(UTC)
    uses: TokenUses | None = getattr(request.app.state, "token_uses", None)
    if (
        uses is not None
        and principal.token_id is not None
        and accounts.last_use_due(principal, now)
    ):
        uses.note(principal.token_id, now)


async def flush_token_uses(request: Request) -> None:
    """Write this process's noted token uses now (for routes that show ``last_used_at``)."""
    uses: TokenUses | None = getattr(request.app.state, "token_uses", None)
    if uses is not None:
        await run_in_threadpool(uses.flush)


async def get_current_user(
    principal: Annotated[Principal | None, Depends(get_optional_user)],
) -> Principal:
    """The caller; 401 without a token."""
    if principal is None:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
RequestIdDep = Annotated[str, Depends(_request_id)]
OptionalUser = Annotated[Principal | None, Depends(get_optional_user)]
CurrentUser = Annotated[Principal, Depends(get_current_user)]

__all__ = [
    "CurrentUser",
    "OptionalUser",
    "Principal",
    "RequestIdDep",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "authenticate_in",
    "authenticate_token",
    "flush_token_uses",
    "get_current_user",
    "get_optional_user",
    "get_session",
    "get_settings",
    "get_store",
    "note_use",
]
