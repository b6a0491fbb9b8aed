"""Webhooks per namespace: CRUD, the delivery log, test pings, and request signing.

Delivering them is a background process (``loreg.background.webhooks``); this module holds
what a request does: a namespace admin creates, changes and deletes webhooks, reads their
delivery log and queues a test ``ping``.

Each delivery is signed: ``X-Loreg-Signature: sha256=<hex>`` is the HMAC-SHA256 of the
exact body bytes with the webhook's secret (a receiver checks it with
:func:`verify_signature`).

A URL whose host is (or resolves to) a loopback, private, link-local, multicast or reserved
address is refused when it is stored, unless the operator allows its network
(``loreg.services.egress``); the delivery pass checks it again before every attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db.webhooks import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from loreg.errors import InvalidInput, NotFound
from loreg.services import accounts, audit, egress, events
from loreg.services.egress import EgressPolicy
from loreg.services.permissions import Actor, require_admin_namespace

SIGNATURE_HEADER = "X-Loreg-Signature"
MAX_WEBHOOKS_PER_NAMESPACE = 50


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- signing


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


# --------------------------------------------------------------------------- CRUD


def _validate_url(url: str, policy: EgressPolicy) -> str:
    """A well-formed http(s) URL whose host is not a refused address (``egress``)."""
    url = _well_formed_url(url)
    egress.check_url(url, policy, require_resolution=False)
    return url


def _well_formed_url(url: str) -> str:
    url = url.strip()
    bad = InvalidInput(
        "webhook URL must be an absolute http:// or https:// URL "
        "(at most 2048 characters, no spaces)",
        details={"url": url[:200]},
    )
    if len(url) > 2048 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise bad
    try:
        parts = urlsplit(url)
        hostname, _port = parts.hostname, parts.port
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise bad
    if parts.username or parts.password:
        raise InvalidInput(
            "webhook URL must not contain credentials; the signature "
            "authenticates loreg to the receiver"
        )
    return url


def _validate_events(values: Sequence[str] | None) -> list[str]:
    if values is None or list(values) == ["*"]:
        return ["*"]
    chosen = sorted(set(values))
    unknown = [v for v in chosen if v not in events.EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidInput(
            "events must be a non-empty list of known event types, or ['*']",
            details={"unknown": unknown, "known": sorted(events.EVENT_TYPES)},
        )
    return chosen


def create(
    session: Session,
    actor: Actor,
    namespace: str,
    *,
    url: str,
    events_: Sequence[str] | None = None,
    secret: str | None = None,
    active: bool = True,
    description: str = "",
    policy: EgressPolicy = egress.STRICT,
) -> tuple[Webhook, str]:
    """A new webhook (namespace admins only); returns it with its secret.

    Without ``secret`` one is generated; it is shown in this answer and never again.
    ``policy``: which non-public networks the URL may point into (``egress``).
    """
    ns = accounts.get_namespace(session, namespace)
    principal = require_admin_namespace(session, actor, ns)
    count = len(session.scalars(select(Webhook.id).where(Webhook.namespace_id == ns.id)).all())
    if count >= MAX_WEBHOOKS_PER_NAMESPACE:
        raise InvalidInput(f"a namespace may have at most {MAX_WEBHOOKS_PER_NAMESPACE} webhooks")
    if secret is not None and not 16 <= len(secret) <= 256:
        raise InvalidInput("a webhook secret must be 16 to 256 characters")
    value = secret or "whsec_" + secrets.token_urlsafe(32)
    hook = Webhook(
        namespace_id=ns.id,
        url=_validate_url(url, policy),
        secret=value,
        events=_validate_events(events_),
        active=active,
        description=description[:2000],
        created_by=principal.user_id,
    )
    session.add(hook)
    session.flush()
    audit.record(
        session,
        actor,
        "webhook.create",
        "webhook",
        f"{ns.name}#{hook.id}",
        {"url": hook.url, "events": hook.events},
    )
    return hook, value


def list_webhooks(session: Session, actor: Actor, namespace: str) -> list[Webhook]:
    ns = accounts.get_namespace(session, namespace)
    require_admin_namespace(session, actor, ns)
    return list(
        session.scalars(select(Webhook).where(Webhook.namespace_id == ns.id).order_by(Webhook.id))
    )


def get(session: Session, actor: Actor, namespace: str, webhook_id: int) -> Webhook:
    ns = accounts.get_namespace(session, namespace)
    require_admin_namespace(session, actor, ns)
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.namespace_id != ns.id:
        raise NotFound(
            f"webhook {webhook_id} not found in namespace '{namespace}'",
            details={"namespace": namespace, "webhook_id": webhook_id},
        )
    return hook


def update(
    session: Session,
    actor: Actor,
    namespace: str,
    webhook_id: int,
    *,
    url: str | None = None,
    events_: Sequence[str] | None = None,
    active: bool | None = None,
    description: str | None = None,
    policy: EgressPolicy = egress.STRICT,
) -> Webhook:
    hook = get(session, actor, namespace, webhook_id)
    if url is not None:
        hook.url = _validate_url(url, policy)
    if events_ is not None:
        hook.events = _validate_events(events_)
    if active is not None:
        hook.active = active
    if description is not None:
        hook.description = description[:2000]
    session.flush()
    audit.record(
        session,
        actor,
        "webhook.update",
        "webhook",
        f"{namespace}#{hook.id}",
        {"url": hook.url, "events": hook.events, "active": hook.active},
    )
    return hook


def delete(session: Session, actor: Actor, namespace: str, webhook_id: int) -> None:
    hook = get(session, actor, namespace, webhook_id)
    session.delete(hook)
    session.flush()
    audit.record(
        session, actor, "webhook.delete", "webhook", f"{namespace}#{webhook_id}", {"url": hook.url}
    )


def list_deliveries(
    session: Session,
    actor: Actor,
    namespace: str,
    webhook_id: int,
    *,
    limit: int = 50,
    status: str | None = None,
) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    """The delivery log, newest first."""
    hook = get(session, actor, namespace, webhook_id)
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500", details={"limit": limit})
    query = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.webhook_id == hook.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if status is not None:
        if status not in {s.value for s in DeliveryStatus}:
            raise InvalidInput("status must be pending, delivered or failed")
        query = query.where(WebhookDelivery.status == status)
    return [(d, e) for d, e in session.execute(query)]


def queue_test(session: Session, actor: Actor, namespace: str, webhook_id: int) -> int:
    """Queue a ``ping`` event for this one webhook; returns the delivery id.

    The route commits, then posts it at once (``loreg.background.webhooks.attempt``); if
    that fails the delivery is retried by the worker like any other.
    """
    hook = get(session, actor, namespace, webhook_id)
    event = WebhookEvent(
        type=events.PING,
        namespace_id=hook.namespace_id,
        payload={
            "webhook_id": hook.id,
            "url": hook.url,
            "zen": "keep adapters small and fingerprints exact",
        },
        dispatched_at=_now(),
    )
    session.add(event)
    session.flush()
    delivery = WebhookDelivery(
        webhook_id=hook.id,
        event_id=event.id,
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        next_attempt_at=_now(),
        attempt_log=[],
    )
    session.add(delivery)
    session.flush()
    return delivery.id


def get_delivery(session: Session, delivery_id: int) -> tuple[WebhookDelivery, WebhookEvent]:
    """A delivery with its event, as recorded now (after a test ping was posted)."""
    delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    if delivery is None:
        raise NotFound(
            f"webhook delivery {delivery_id} not found", details={"delivery_id": delivery_id}
        )
    return delivery, delivery.event
