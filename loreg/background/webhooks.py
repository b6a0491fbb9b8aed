"""The webhook delivery pass the worker runs (and the test ping posts at once).

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
webhook's secret (``loreg.services.webhooks.verify_signature``).

Receivers are reached through ``loreg.background.egress``: a URL whose host is (or resolves
to) a loopback, private, link-local, multicast or reserved address is refused before every
attempt, unless the operator allows its network; the connection goes to the address that
was checked; redirects are not followed. A delivery records the receiver's status code,
never its response body: what a receiver answers is not for the users who configure
webhooks to read.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loreg.background import egress
from loreg.db.models import Namespace
from loreg.db.session import is_postgres
from loreg.db.webhooks import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from loreg.errors import LoregError
from loreg.services.egress import STRICT, EgressPolicy
from loreg.services.webhooks import SIGNATURE_HEADER, sign

log = logging.getLogger("loreg.webhooks")

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


def _now() -> datetime:
    return datetime.now(UTC)


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
    query = (
        select(WebhookEvent)
        .where(WebhookEvent.dispatched_at.is_(None))
        .order_by(WebhookEvent.created_at)
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    pending = list(session.scalars(query))
    hooks_by_ns: dict[int, list[Webhook]] = {}
    for event in pending:
        if event.namespace_id is not None:
            if event.namespace_id not in hooks_by_ns:
                hooks_by_ns[event.namespace_id] = list(
                    session.scalars(
                        select(Webhook).where(
                            Webhook.namespace_id == event.namespace_id, Webhook.active.is_(True)
                        )
                    )
                )
            for hook in hooks_by_ns[event.namespace_id]:
                if _subscribes(hook, event.type):
                    session.add(
                        WebhookDelivery(
                            webhook_id=hook.id,
                            event_id=event.id,
                            status=DeliveryStatus.PENDING.value,
                            attempts=0,
                            next_attempt_at=event.created_at,
                            attempt_log=[],
                        )
                    )
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
    session: Session,
    now: datetime,
    limit: int,
    lease: float,
    only: int | None = None,
) -> list[_Send]:
    """Take due deliveries under a lease (commits, so the lease is visible to others)."""
    query = (
        select(WebhookDelivery)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
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
        response = egress.post(
            client,
            send.url,
            content=send.body,
            headers=send.headers,
            timeout=timeout,
            policy=policy,
        )
    except LoregError as exc:  # refused or unresolvable destination: nothing was sent
        return None, exc.message[:1000]
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:1000]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    if 300 <= response.status_code < 400:
        return response.status_code, (
            f"HTTP {response.status_code}: redirects are not "
            "followed; point the webhook at the final URL"
        )
    return response.status_code, f"HTTP {response.status_code}"


def _record(
    session: Session,
    send: _Send,
    status_code: int | None,
    error: str | None,
    elapsed: float,
    now: datetime,
    *,
    backoff_base: float,
    backoff_max: float,
    max_attempts: int,
) -> str:
    delivery = session.get(WebhookDelivery, send.delivery_id)
    if delivery is None:  # webhook deleted meanwhile
        return "gone"
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error
    entry = {
        "at": now.isoformat(),
        "status_code": status_code,
        "error": error,
        "duration_ms": round(elapsed * 1000, 1),
    }
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
    log.info(
        "webhook delivery %s to %s: %s",
        send.delivery_id,
        send.url,
        outcome,
        extra={"delivery_id": send.delivery_id, "status_code": status_code},
    )
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
    policy: EgressPolicy = STRICT,
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
                outcome = _record(
                    session,
                    send,
                    status_code,
                    error,
                    elapsed,
                    fixed_now or _now(),
                    backoff_base=backoff_base,
                    backoff_max=backoff_max,
                    max_attempts=max_attempts,
                )
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
        WebhookDelivery.status == DeliveryStatus.PENDING.value
    )
    old = list(
        session.scalars(
            select(WebhookEvent)
            .where(
                WebhookEvent.dispatched_at.is_not(None),
                WebhookEvent.created_at < cutoff,
                WebhookEvent.id.not_in(unfinished),
            )
            .limit(10_000)
        )
    )
    for event in old:
        session.delete(event)
    session.flush()
    return len(old)
