"""The audit log: every write records who did what to which target, in its own transaction.

``record`` only adds a row to the caller's session, so the event commits or rolls back
together with the write it describes: there is never an event for a write that did not
happen, nor a write without its event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db.models import AuditEvent, User
from loreg.errors import InvalidInput
from loreg.services.pagination import Page, cursor_int, decode_cursor, page_of
from loreg.services.permissions import Actor, require_site_admin

MAX_LIMIT = 500


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    target: str,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> AuditEvent:
    """Add one audit event to ``session`` (the caller commits it with the write).

    ``action`` is a dotted verb (``org.create``, ``token.revoke``); ``target`` names the
    thing (``acme``, ``acme/llama-lora@3``). ``request_id`` defaults to the actor's.
    """
    extra = dict(details or {})
    if actor is not None and actor.token_id is not None:
        extra.setdefault("token_id", actor.token_id)
    event = AuditEvent(
        actor_user_id=actor.user_id if actor is not None else None,
        action=action[:64],
        target_type=target_type[:32],
        target=target[:512],
        details=extra,
        request_id=(request_id or (actor.request_id if actor is not None else None)),
    )
    session.add(event)
    return event


def list_events(
    session: Session,
    actor: Actor,
    *,
    actor_name: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[tuple[AuditEvent, str | None]]:
    """Newest first, with the actor's user name; only site admins may read the log.

    ``action`` ending in ``.*`` matches a prefix (``org.*``). ``cursor``: the
    ``next_cursor`` of the previous page.
    """
    require_site_admin(actor)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", details={"limit": limit})
    before_id = cursor_int(decode_cursor("audit", cursor), "id")
    query = (
        select(AuditEvent, User.name)
        .outerjoin(User, User.id == AuditEvent.actor_user_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit + 1)
    )
    if actor_name is not None:
        query = query.where(User.name == actor_name)
    if action is not None:
        if action.endswith(".*"):
            query = query.where(AuditEvent.action.startswith(action[:-1], autoescape=True))
        else:
            query = query.where(AuditEvent.action == action)
    if target_type is not None:
        query = query.where(AuditEvent.target_type == target_type)
    if target is not None:
        query = query.where(AuditEvent.target == target)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    rows: list[tuple[AuditEvent, str | None]] = [(e, name) for e, name in session.execute(query)]
    return page_of(rows, limit, "audit", lambda row: {"id": row[0].id})
