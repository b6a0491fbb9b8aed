"""The audit log, for site administrators: filter by actor, action, target and time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from loreg.api.deps import CurrentUser, SessionDep
from loreg.api.openapi import errors
from loreg.api.schemas.audit import AuditEventOut, AuditPage
from loreg.api.schemas.common import NO_NUL_PATTERN, as_utc
from loreg.services import audit

router = APIRouter(tags=["audit"])


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="List audit events, newest first",
    responses=errors(403),
)
def list_audit_events(
    session: SessionDep,
    actor: CurrentUser,
    actor_name: Annotated[
        str | None,
        Query(
            pattern=NO_NUL_PATTERN,
            alias="actor",
            max_length=96,
            description="User name of the actor",
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            pattern=NO_NUL_PATTERN,
            max_length=64,
            description="Exact action, or a prefix as 'org.*'",
        ),
    ] = None,
    target_type: Annotated[str | None, Query(pattern=NO_NUL_PATTERN, max_length=32)] = None,
    target: Annotated[str | None, Query(pattern=NO_NUL_PATTERN, max_length=512)] = None,
    since: Annotated[datetime | None, Query(description="Events at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Events before (ISO 8601)")] = None,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_LIMIT)] = 100,
) -> AuditPage:
    """Every write recorded by the registry, newest first, filtered by actor, action (or prefix
    as `org.*`), target and time. Site administrators (admin-scoped token).
    """
    page = audit.list_events(
        session,
        actor,
        actor_name=actor_name,
        action=action,
        target_type=target_type,
        target=target,
        since=as_utc(since, "since"),
        until=as_utc(until, "until"),
        cursor=cursor,
        limit=limit,
    )
    events = [
        AuditEventOut(
            id=e.id,
            at=e.at,
            actor=name,
            action=e.action,
            target_type=e.target_type,
            target=e.target,
            details=e.details or {},
            request_id=e.request_id,
        )
        for e, name in page.items
    ]
    return AuditPage(events=events, next_cursor=page.next_cursor)
