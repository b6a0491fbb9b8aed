"""Webhooks per namespace: CRUD, signing, and the delivery pass the worker runs.

Delivery is at-least-once, from the outbox that ``loreg.services.events.emit`` writes in
the transaction of each change:

1. *Fan-out*: each committed, undispatched event becomes one ``WebhookDelivery`` per active
   webhook of its namespace that subscribes to its type.
2. *Send*: due deliveries are taken under a short lease (``next_attempt_at`` pushed past the
   request timeout, so two workers never post the same attempt), posted outside any
   transaction, and the outcome recorded: 2xx -> ``delivered``; anything else -> retried
   after ``backoff_base * 2**(attempts-1)`` seconds (capped), ``failed`` after
   ``max_attempts``. Every attempt is kept in the delivery's ``attempt_log``.

Each request is a JSON ``POST`` with headers ``X-Loreg-Event`` (type), ``X-Loreg-Event-Id``
(stable across retries: deduplicate on it), ``X-Loreg-Delivery`` and
``X-Loreg-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes with the
webhook's secret (check it with :func:`verify_signature`).

Receivers are reached through ``loreg.services.egress``: a URL whose host is (or resolves
to) a loopback, private, link-local, multicast or reserved address is refused when it is
stored and before every attempt, unless the operator allows its network; the connection goes
to the address that was checked; redirects are not followed. A delivery records the
receiver's status code, never its response body: what a receiver answers is not for the
users who configure webhooks to read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loreg.db.models import Namespace
from loreg.db.session import is_postgres
from loreg.db.webhooks import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from loreg.errors import InvalidInput, LoregError, NotFound
from loreg.services import accounts, audit, egress, events
from loreg.services.egress import EgressPolicy
from loreg.services.permissions import Actor, require_admin_namespace

log = logging.getLogger("loreg.webhooks")

SIGNATURE_HEADER = "X-Loreg-Signature"
EVENT_HEADER = "X-Loreg-Event"
EVENT_ID_HEADER = "X-Loreg-Event-Id"
DELIVERY_HEADER = "X-Loreg-Delivery"
USER_AGENT = "loreg-webhooks/1"

#: Defaults of the delivery pass (seconds / counts).
REQUEST_TIMEOUT = 10.0
BACKOFF_BASE = 10.0
#: Defaults of LOREG_WEBHOOK_BACKOFF_MAX_SECONDS and LOREG_WEBHOOK_MAX_ATTEMPTS, which the
#: entry points pass (a test keeps them equal).
BACKOFF_MAX = 3600.0
MAX_ATTEMPTS = 8
#: Attempts kept in a delivery's ``attempt_log`` (``attempts`` counts them all).
ATTEMPT_LOG_MAX = 20
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


def event_body(event: WebhookEvent, namespace_name: str | None) -> bytes:
    """The exact bytes posted for an event (the same on every retry)."""
    document = {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "namespace": namespace_name,
        "data": event.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- CRUD


def _validate_url(url: str, policy: EgressPolicy) -> str:
    """A well-formed http(s) URL whose host is not a refused address (``egress``)."""
    url = _well_formed_url(url)
    egress.check_url(url, policy, require_resolution=False)
    return url


def _well_formed_url(url: str) -> str:
    url = url.strip()
    bad = InvalidInput("webhook URL must be an absolute http:// or https:// URL "
                       "(at most 2048 characters, no spaces)", details={"url": url[:200]})
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
        raise InvalidInput("webhook URL must not contain credentials; the signature "
                           "authenticates loreg to the receiver")
    return url


def _validate_events(values: Sequence[str] | None) -> list[str]:
    if values is None or list(values) == ["*"]:
        return ["*"]
    chosen = sorted(set(values))
    unknown = [v for v in chosen if v not in events.EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidInput("events must be a non-empty list of known event types, or ['*']",
                           details={"unknown": unknown, "known": sorted(events.EVENT_TYPES)})
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
    hook = Webhook(namespace_id=ns.id, url=_validate_url(url, policy), secret=value,
                   events=_validate_events(events_), active=active,
                   description=description[:2000], created_by=principal.user_id)
    session.add(hook)
    session.flush()
    audit.record(session, actor, "webhook.create", "webhook", f"{ns.name}#{hook.id}",
                 {"url": hook.url, "events": hook.events})
    return hook, value


def list_webhooks(session: Session, actor: Actor, namespace: str) -> list[Webhook]:
    ns = accounts.get_namespace(session, namespace)
    require_admin_namespace(session, actor, ns)
    return list(session.scalars(
        select(Webhook).where(Webhook.namespace_id == ns.id).order_by(Webhook.id)
    ))


def get(session: Session, actor: Actor, namespace: str, webhook_id: int) -> Webhook:
    ns = accounts.get_namespace(session, namespace)
    require_admin_namespace(session, actor, ns)
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.namespace_id != ns.id:
        raise NotFound(f"webhook {webhook_id} not found in namespace '{namespace}'",
                       details={"namespace": namespace, "webhook_id": webhook_id})
    return hook


def update(
    session: Session, actor: Actor, namespace: str, webhook_id: int, *,
    url: str | None = None, events_: Sequence[str] | None = None,
    active: bool | None = None, description: str | None = None,
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
    audit.record(session, actor, "webhook.update", "webhook", f"{namespace}#{hook.id}",
                 {"url": hook.url, "events": hook.events, "active": hook.active})
    return hook


def delete(session: Session, actor: Actor, namespace: str, webhook_id: int) -> None:
    hook = get(session, actor, namespace, webhook_id)
    session.delete(hook)
    session.flush()
    audit.record(session, actor, "webhook.delete", "webhook", f"{namespace}#{webhook_id}",
                 {"url": hook.url})


def list_deliveries(
    session: Session, actor: Actor, namespace: str, webhook_id: int, *, limit: int = 50,
    status: str | None = None,
) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    """The delivery log, newest first."""
    hook = get(session, actor, namespace, webhook_id)
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500", details={"limit": limit})
    query = (select(WebhookDelivery, WebhookEvent)
             .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.webhook_id == hook.id)
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    if status is not None:
        if status not in {s.value for s in DeliveryStatus}:
            raise InvalidInput("status must be pending, delivered or failed")
        query = query.where(WebhookDelivery.status == status)
    return [(d, e) for d, e in session.execute(query)]


def queue_test(session: Session, actor: Actor, namespace: str, webhook_id: int) -> int:
    """Queue a ``ping`` event for this one webhook; returns the delivery id.

    The route commits, then calls :func:`attempt` to post it at once; if that fails the
    delivery is retried by the worker like any other.
    """
    hook = get(session, actor, namespace, webhook_id)
    event = WebhookEvent(type=events.PING, namespace_id=hook.namespace_id,
                         payload={"webhook_id": hook.id, "url": hook.url,
                                  "zen": "keep adapters small and fingerprints exact"},
                         dispatched_at=_now())
    session.add(event)
    session.flush()
    delivery = WebhookDelivery(webhook_id=hook.id, event_id=event.id,
                               status=DeliveryStatus.PENDING.value, attempts=0,
                               next_attempt_at=_now(), attempt_log=[])
    session.add(delivery)
    session.flush()
    return delivery.id


# --------------------------------------------------------------------------- delivery


@dataclass
class DeliveryStats:
    dispatched_events: int = 0
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    retrying: int = 0
    delivery_ids: list[int] = field(default_factory=list)


def _subscribes(hook: Webhook, event_type: str) -> bool:
    return "*" in hook.events or event_type in hook.events


def dispatch_events(session: Session, *, now: datetime | None = None, limit: int = 500) -> int:
    """Fan committed, undispatched events out into deliveries (caller commits)."""
    now = now or _now()
    query = (select(WebhookEvent).where(WebhookEvent.dispatched_at.is_(None))
             .order_by(WebhookEvent.created_at).limit(limit))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    pending = list(session.scalars(query))
    hooks_by_ns: dict[int, list[Webhook]] = {}
    for event in pending:
        if event.namespace_id is not None:
            if event.namespace_id not in hooks_by_ns:
                hooks_by_ns[event.namespace_id] = list(session.scalars(
                    select(Webhook).where(Webhook.namespace_id == event.namespace_id,
                                          Webhook.active.is_(True))))
            for hook in hooks_by_ns[event.namespace_id]:
                if _subscribes(hook, event.type):
                    session.add(WebhookDelivery(
                        webhook_id=hook.id, event_id=event.id,
                        status=DeliveryStatus.PENDING.value, attempts=0,
                        next_attempt_at=event.created_at, attempt_log=[]))
        event.dispatched_at = now
    session.flush()
    return len(pending)


@dataclass(frozen=True)
class _Send:
    delivery_id: int
    url: str
    headers: dict[str, str]
    body: bytes


def _prepare(session: Session, delivery: WebhookDelivery) -> _Send | None:
    hook, event = delivery.webhook, delivery.event
    if not hook.active:
        return None
    ns_name = session.scalar(select(Namespace.name).where(Namespace.id == hook.namespace_id))
    body = event_body(event, ns_name)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event.type,
        EVENT_ID_HEADER: event.id,
        DELIVERY_HEADER: str(delivery.id),
        SIGNATURE_HEADER: sign(hook.secret, body),
    }
    return _Send(delivery.id, hook.url, headers, body)


def _take(
    session: Session, now: datetime, limit: int, lease: float, only: int | None = None,
) -> list[_Send]:
    """Take due deliveries under a lease (commits, so the lease is visible to others)."""
    query = (select(WebhookDelivery)
             .where(WebhookDelivery.status == DeliveryStatus.PENDING.value,
                    WebhookDelivery.next_attempt_at <= now)
             .order_by(WebhookDelivery.next_attempt_at).limit(limit))
    if only is not None:
        query = query.where(WebhookDelivery.id == only)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    sends: list[_Send] = []
    for delivery in session.scalars(query).all():
        prepared = _prepare(session, delivery)
        if prepared is None:
            delivery.status = DeliveryStatus.FAILED.value
            delivery.last_error = "webhook is inactive"
            continue
        delivery.next_attempt_at = now + timedelta(seconds=lease)
        sends.append(prepared)
    session.commit()
    return sends


def _post(
    client: httpx.Client, send: _Send, timeout: float, policy: EgressPolicy
) -> tuple[int | None, str | None]:
    """Post one delivery: ``(status code, error)``. The error names the status or what kept
    the request from being made; the receiver's body is never read into it."""
    try:
        response = egress.post(client, send.url, content=send.body, headers=send.headers,
                               timeout=timeout, policy=policy)
    except LoregError as exc:  # refused or unresolvable destination: nothing was sent
        return None, exc.message[:1000]
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:1000]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    if 300 <= response.status_code < 400:
        return response.status_code, (f"HTTP {response.status_code}: redirects are not "
                                      "followed; point the webhook at the final URL")
    return response.status_code, f"HTTP {response.status_code}"


def _record(
    session: Session, send: _Send, status_code: int | None, error: str | None,
    elapsed: float, now: datetime, *, backoff_base: float, backoff_max: float,
    max_attempts: int,
) -> str:
    delivery = session.get(WebhookDelivery, send.delivery_id)
    if delivery is None:  # webhook deleted meanwhile
        return "gone"
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error
    entry = {"at": now.isoformat(), "status_code": status_code, "error": error,
             "duration_ms": round(elapsed * 1000, 1)}
    delivery.attempt_log = [*list(delivery.attempt_log or []), entry][-ATTEMPT_LOG_MAX:]
    if error is None:
        delivery.status = DeliveryStatus.DELIVERED.value
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        outcome = "delivered"
    elif delivery.attempts >= max_attempts:
        delivery.status = DeliveryStatus.FAILED.value
        delivery.next_attempt_at = None
        outcome = "failed"
    else:
        delay = min(backoff_base * 2 ** (delivery.attempts - 1), backoff_max)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        outcome = "retrying"
    session.commit()
    log.info("webhook delivery %s to %s: %s", send.delivery_id, send.url, outcome,
             extra={"delivery_id": send.delivery_id, "status_code": status_code})
    return outcome


def deliver_pending(
    sessions: sessionmaker[Session],
    *,
    client: httpx.Client | None = None,
    now: datetime | None = None,
    limit: int = 100,
    timeout: float = REQUEST_TIMEOUT,
    backoff_base: float = BACKOFF_BASE,
    backoff_max: float = BACKOFF_MAX,
    max_attempts: int = MAX_ATTEMPTS,
    only: int | None = None,
    policy: EgressPolicy = egress.STRICT,
) -> DeliveryStats:
    """One delivery pass: fan out new events, post what is due, record the outcomes.

    Safe to run from several workers at once. Manages its own transactions (it is a job
    boundary, like a worker's handler). ``only`` restricts it to one delivery (test pings).
    ``policy``: the non-public networks receivers may be in (checked before every post).
    """
    stats = DeliveryStats()
    fixed_now = now
    now = now or _now()
    with sessions() as session:
        if only is None:
            stats.dispatched_events = dispatch_events(session, now=now)
            session.commit()
        sends = _take(session, now, limit, lease=timeout + 30, only=only)
    if not sends:
        return stats
    own_client = client is None
    http = client or egress.client()
    try:
        for send in sends:
            started = time.monotonic()
            status_code, error = _post(http, send, timeout, policy)
            elapsed = time.monotonic() - started
            with sessions() as session:
                outcome = _record(session, send, status_code, error, elapsed,
                                  fixed_now or _now(),
                                  backoff_base=backoff_base, backoff_max=backoff_max,
                                  max_attempts=max_attempts)
            stats.attempted += 1
            stats.delivery_ids.append(send.delivery_id)
            if outcome == "delivered":
                stats.delivered += 1
            elif outcome == "failed":
                stats.failed += 1
            elif outcome == "retrying":
                stats.retrying += 1
    finally:
        if own_client:
            http.close()
    return stats


def attempt(sessions: sessionmaker[Session], delivery_id: int, **kwargs: Any) -> DeliveryStats:
    """Post one pending delivery now (the test-delivery endpoint)."""
    return deliver_pending(sessions, only=delivery_id, **kwargs)


def prune(session: Session, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete dispatched events older than ``older_than`` whose deliveries are all finished
    (the delivery log's retention). Returns how many events went."""
    cutoff = (now or _now()) - older_than
    unfinished = select(WebhookDelivery.event_id).where(
        WebhookDelivery.status == DeliveryStatus.PENDING.value)
    old = list(session.scalars(
        select(WebhookEvent).where(WebhookEvent.dispatched_at.is_not(None),
                                   WebhookEvent.created_at < cutoff,
                                   WebhookEvent.id.not_in(unfinished)).limit(10_000)))
    for event in old:
        session.delete(event)
    session.flush()
    return len(old)
