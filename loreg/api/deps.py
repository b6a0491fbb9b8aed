"""FastAPI dependencies: settings, a DB session per request, the blob store, the caller.

Use them as ``Annotated`` types in route signatures::

    def route(session: SessionDep, user: CurrentUser) -> ...:
        thing = service.do(session, user, ...)
        session.commit()

Transactions end at the request boundary: the route commits explicitly when it is done;
if anything raises, the session is rolled back and closed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from loreg.config import Settings
from loreg.errors import Unauthenticated
from loreg.services import accounts
from loreg.services.permissions import Principal
from loreg.storage import BlobStore

log = logging.getLogger("loreg.api")

#: Documents the scheme in OpenAPI; the header itself is parsed in ``get_optional_user``.
bearer_scheme = HTTPBearer(auto_error=False, bearerFormat="lrg_...",
                           description="An API token: `Authorization: Bearer lrg_...`")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    maker: sessionmaker[Session] = request.app.state.sessionmaker
    return maker


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; rolled back on error, closed at the end, never auto-committed."""
    session = get_sessionmaker(request)()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.store
    return store


def get_request_id(request: Request) -> str:
    rid: str | None = getattr(request.state, "request_id", None)
    return rid or ""


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return value


def get_optional_user(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal | None:
    """The caller, or ``None`` when no token was sent. A bad token is a 401, never anonymous."""
    value = _bearer_token(request)
    if value is None:
        return None
    return authenticate_token(request, value)


def authenticate_token(request: Request, value: str) -> Principal:
    """The principal a token value stands for (``Unauthenticated`` if none), tagged with the
    request id; shared by the bearer header here and the UI's session cookie.

    The lookup runs in its own short session so the ``last_used_at`` refresh commits even
    when the request itself only reads; a failure to record it does not fail the request.
    """
    with get_sessionmaker(request)() as session:
        principal = accounts.authenticate(session, value)
        if session.dirty:
            try:
                session.commit()
            except SQLAlchemyError:
                session.rollback()
                log.warning("could not record last use of token %s", principal.token_id,
                            exc_info=True)
    return principal.with_request_id(get_request_id(request) or None)


def get_current_user(
    principal: Annotated[Principal | None, Depends(get_optional_user)],
) -> Principal:
    """The caller; 401 without a token."""
    if principal is None:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
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
    "authenticate_token",
    "get_current_user",
    "get_optional_user",
    "get_session",
    "get_settings",
    "get_store",
]
