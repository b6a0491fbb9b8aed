"""Webhooks per namespace (namespace admins): create, list, show, update, delete, the
delivery log, and a test delivery (a signed ``ping``, posted at once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from loreg.api.deps import CurrentUser, SessionDep, SettingsDep, get_sessionmaker
from loreg.api.openapi import errors
from loreg.api.schemas.webhooks import (
    DeliveryList,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookUpdate,
)
from loreg.background import webhooks as delivery_pass
from loreg.db.webhooks import Webhook, WebhookDelivery, WebhookEvent
from loreg.errors import NotFound
from loreg.services import webhooks as svc
from loreg.services.egress import EgressPolicy

router = APIRouter(tags=["webhooks"])

BASE = "/namespaces/{namespace}/webhooks"


def _out(hook: Webhook, namespace: str) -> WebhookOut:
    return WebhookOut(
        id=hook.id,
        namespace=namespace,
        url=hook.url,
        events=list(hook.events),
        active=hook.active,
        description=hook.description,
        created_at=hook.created_at,
        updated_at=hook.updated_at,
    )


def _delivery(d: WebhookDelivery, e: WebhookEvent) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=e.id,
        event_type=e.type,
        status=d.status,
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at,
        delivered_at=d.delivered_at,
        created_at=d.created_at,
        attempt_log=list(d.attempt_log or []),
    )


def _check_id(webhook_id: int) -> int:
    """Ids beyond the column's range are simply not found (never a database error)."""
    if not 1 <= webhook_id <= 2**31 - 1:
        raise NotFound(f"webhook {webhook_id} not found")
    return webhook_id


@router.post(
    BASE,
    status_code=201,
    response_model=WebhookCreated,
    summary="Create a webhook (its secret is shown once)",
    responses=errors(403, 404),
)
def create_webhook(
    namespace: str,
    body: WebhookCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentUser,
) -> WebhookCreated:
    """Create a webhook on a namespace for some event types (or `*`). Its signing secret is in
    the answer once; receivers verify `X-Loreg-Signature` (HMAC-SHA256 of the body) with it.
    Namespace admins.
    """
    hook, secret = svc.create(
        session,
        actor,
        namespace,
        url=body.url,
        events_=body.events,
        secret=body.secret,
        active=body.active,
        description=body.description,
        policy=EgressPolicy.from_settings(settings),
    )
    session.commit()
    return WebhookCreated(**_out(hook, namespace).model_dump(), secret=secret)


@router.get(
    BASE,
    response_model=WebhookList,
    summary="List a namespace's webhooks",
    responses=errors(403, 404),
)
def list_webhooks(namespace: str, session: SessionDep, actor: CurrentUser) -> WebhookList:
    """The namespace's webhooks (without their secrets). Namespace admins."""
    return WebhookList(
        webhooks=[_out(h, namespace) for h in svc.list_webhooks(session, actor, namespace)]
    )


@router.get(
    BASE + "/{webhook_id}",
    response_model=WebhookOut,
    summary="Show a webhook",
    responses=errors(403, 404),
)
def get_webhook(
    namespace: str, webhook_id: int, session: SessionDep, actor: CurrentUser
) -> WebhookOut:
    """One webhook. Namespace admins."""
    return _out(svc.get(session, actor, namespace, _check_id(webhook_id)), namespace)


@router.patch(
    BASE + "/{webhook_id}",
    response_model=WebhookOut,
    summary="Change a webhook's URL, events, active flag or description",
    responses=errors(403, 404),
)
def update_webhook(
    namespace: str,
    webhook_id: int,
    body: WebhookUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentUser,
) -> WebhookOut:
    """Change a webhook's URL, events, active flag or description. Namespace admins."""
    hook = svc.update(
        session,
        actor,
        namespace,
        _check_id(webhook_id),
        url=body.url,
        events_=body.events,
        active=body.active,
        description=body.description,
        policy=EgressPolicy.from_settings(settings),
    )
    session.commit()
    return _out(hook, namespace)


@router.delete(
    BASE + "/{webhook_id}", status_code=204, summary="Delete a webhook", responses=errors(403, 404)
)
def delete_webhook(
    namespace: str, webhook_id: int, session: SessionDep, actor: CurrentUser
) -> Response:
    """Delete a webhook and its pending deliveries. Namespace admins."""
    svc.delete(session, actor, namespace, _check_id(webhook_id))
    session.commit()
    return Response(status_code=204)


@router.get(
    BASE + "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    summary="The delivery log, newest first",
    responses=errors(403, 404),
)
def list_deliveries(
    namespace: str,
    webhook_id: int,
    session: SessionDep,
    actor: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    status: Annotated[str | None, Query(pattern=r"^(pending|delivered|failed)$")] = None,
) -> DeliveryList:
    """One webhook's deliveries, newest first: status, attempts, the last HTTP status or error,
    and each attempt. Namespace admins.
    """
    rows = svc.list_deliveries(
        session, actor, namespace, _check_id(webhook_id), limit=limit, status=status
    )
    return DeliveryList(deliveries=[_delivery(d, e) for d, e in rows])


@router.post(
    BASE + "/{webhook_id}/test",
    response_model=DeliveryOut,
    summary="Send a signed 'ping' to this webhook now; answers its delivery record",
    responses=errors(403, 404),
)
def test_webhook(
    namespace: str,
    webhook_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentUser,
) -> DeliveryOut:
    """Posts at once (10 s timeout); if the receiver fails, the worker retries it later like
    any other delivery."""
    delivery_id = svc.queue_test(session, actor, namespace, _check_id(webhook_id))
    session.commit()
    delivery_pass.attempt(
        get_sessionmaker(request),
        delivery_id,
        max_attempts=settings.webhook_max_attempts,
        backoff_max=settings.webhook_backoff_max_seconds,
        policy=EgressPolicy.from_settings(settings),
    )
    return _delivery(*svc.get_delivery(session, delivery_id))
