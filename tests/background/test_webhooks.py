"""Webhook delivery against a real receiver on loopback: signatures, retries with backoff,
the delivery log, fan-out by namespace and event type, the destination checked again."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loreg.background import webhooks as delivery_pass
from loreg.db import DeliveryStatus, Namespace, WebhookDelivery
from loreg.services import events, webhooks
from tests.factories.db import make_adapter, make_namespace, make_version
from tests.fixtures.webhooks import LOOPBACK, Receiver, WebhookWorld

#: The receiver listens on loopback: these tests run as an operator who allows it.
deliver = functools.partial(delivery_pass.deliver_pending, policy=LOOPBACK)
create = functools.partial(webhooks.create, policy=LOOPBACK)


def _emit_version(maker: sessionmaker[Session], org: str) -> str:
    with maker() as s:
        ns = s.scalars(select(Namespace).where(Namespace.name == org)).one()
        version = make_version(s, make_adapter(s, ns))
        event = events.emit(s, events.VERSION_CREATED, ns, events.version_payload(version))
        s.commit()
        return event.id


def test_signed_delivery(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, receiver: Receiver
) -> None:
    with maker() as s:
        _hook, secret = create(s, webhook_world.admin, webhook_world.org, url=receiver.url)
        s.commit()
    assert secret.startswith("whsec_")
    event_id = _emit_version(maker, webhook_world.org)

    stats = deliver(maker)
    assert (stats.dispatched_events, stats.delivered) == (1, 1)
    [(headers, body)] = receiver.requests
    assert webhooks.verify_signature(secret, body, headers["x-loreg-signature"])
    assert headers["x-loreg-signature"].startswith("sha256=")
    assert not webhooks.verify_signature(
        "whsec_wrong-secret-xxxxxxxx", body, headers["x-loreg-signature"]
    )
    assert headers["x-loreg-event"] == "version.created"
    assert headers["x-loreg-event-id"] == event_id
    document = json.loads(body)
    assert document["id"] == event_id and document["type"] == "version.created"
    assert document["namespace"] == webhook_world.org
    assert document["data"]["ref"].startswith(webhook_world.org + "/")

    # nothing more to do
    assert deliver(maker).attempted == 0


def test_fails_twice_then_acknowledged_once(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    with maker() as s:
        hook, secret = create(
            s, webhook_world.admin, webhook_world.org, url=receiver.url, events_=["version.created"]
        )
        s.commit()
    event_id = _emit_version(maker, webhook_world.org)

    t0 = datetime.now(UTC)
    first = deliver(maker, now=t0, backoff_base=60)
    assert (first.attempted, first.retrying) == (1, 1)
    # backoff: not due again until a minute later
    assert deliver(maker, now=t0 + timedelta(seconds=30)).attempted == 0
    second = deliver(maker, now=t0 + timedelta(seconds=61), backoff_base=60)
    assert (second.attempted, second.retrying) == (1, 1)
    with maker() as s:
        d = s.scalars(select(WebhookDelivery)).one()
        # exponential: the second wait is twice the first
        assert d.next_attempt_at is not None
        assert d.next_attempt_at - (t0 + timedelta(seconds=61)) >= timedelta(seconds=119)
    third = deliver(maker, now=t0 + timedelta(hours=1), backoff_base=60)
    assert third.delivered == 1
    assert deliver(maker, now=t0 + timedelta(days=1)).attempted == 0

    assert len(receiver.requests) == 3
    bodies = {body for _h, body in receiver.requests}
    assert len(bodies) == 1  # the same bytes, the same event id, on every attempt
    assert {h["x-loreg-event-id"] for h, _b in receiver.requests} == {event_id}
    for headers, body in receiver.requests:
        assert webhooks.verify_signature(secret, body, headers["x-loreg-signature"])

    with maker() as s:
        log = webhooks.list_deliveries(s, webhook_world.admin, webhook_world.org, hook.id)
    [(delivery, event)] = log
    assert event.id == event_id
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 3
    assert [a["status_code"] for a in delivery.attempt_log] == [500, 503, 200]
    assert delivery.delivered_at is not None and delivery.last_error is None


def test_gives_up_after_max_attempts(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 10
    with maker() as s:
        create(s, webhook_world.admin, webhook_world.org, url=receiver.url)
        s.commit()
    _emit_version(maker, webhook_world.org)
    now = datetime.now(UTC)
    for i in range(5):
        deliver(maker, now=now + timedelta(hours=i), max_attempts=3, backoff_base=1)
    assert len(receiver.requests) == 3
    with maker() as s:
        d = s.scalars(select(WebhookDelivery)).one()
        assert d.status == DeliveryStatus.FAILED and d.attempts == 3
        assert d.last_status_code == 500 and "HTTP 500" in (d.last_error or "")


def test_unreachable_receiver_is_logged_and_retried(
    maker: sessionmaker[Session], webhook_world: WebhookWorld
) -> None:
    with maker() as s:
        create(s, webhook_world.admin, webhook_world.org, url="http://127.0.0.1:9/nothing-here")
        s.commit()
    _emit_version(maker, webhook_world.org)
    stats = deliver(maker, timeout=2)
    assert stats.retrying == 1
    with maker() as s:
        d = s.scalars(select(WebhookDelivery)).one()
        assert d.status == DeliveryStatus.PENDING and d.last_status_code is None
        assert d.last_error and d.attempt_log[0]["error"]


def test_fan_out_by_namespace_type_and_active(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, receiver: Receiver
) -> None:
    with maker() as s:
        create(s, webhook_world.admin, webhook_world.org, url=receiver.url + "/all")
        create(
            s,
            webhook_world.admin,
            webhook_world.org,
            url=receiver.url + "/jobs",
            events_=["job.failed", "job.succeeded"],
        )
        _off, _ = create(
            s, webhook_world.admin, webhook_world.org, url=receiver.url + "/off", active=False
        )
        other = make_namespace(s)
        s.commit()
    _emit_version(maker, webhook_world.org)
    _emit_version(maker, other.name)  # another namespace: none of these hooks
    with maker() as s:
        events.emit(s, events.JOB_FAILED, webhook_world.org, {"job_id": "j1"})
        s.commit()
    stats = deliver(maker)
    assert stats.dispatched_events == 3
    paths = sorted(h["x-loreg-event"] + " " + str(i) for i, (h, _b) in enumerate(receiver.requests))
    assert len(paths) == 3  # /all gets both, /jobs gets job.failed, /off nothing
    with maker() as s:
        assert {
            d.webhook.url.rsplit("/", 1)[1]: d.event.type
            for d in s.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event.has(type="job.failed"))
            )
        } == {"all": "job.failed", "jobs": "job.failed"}


def test_test_delivery_pings_one_webhook(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, receiver: Receiver
) -> None:
    with maker() as s:
        hook, secret = create(s, webhook_world.admin, webhook_world.org, url=receiver.url)
        create(s, webhook_world.admin, webhook_world.org, url=receiver.url + "/other")
        delivery_id = webhooks.queue_test(s, webhook_world.admin, webhook_world.org, hook.id)
        s.commit()
    stats = delivery_pass.attempt(maker, delivery_id, policy=LOOPBACK)
    assert stats.delivered == 1
    [(headers, body)] = receiver.requests
    assert headers["x-loreg-event"] == "ping"
    assert webhooks.verify_signature(secret, body, headers["x-loreg-signature"])
    assert deliver(maker).attempted == 0


def test_every_delivery_checks_the_destination_again(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, receiver: Receiver
) -> None:
    """A URL accepted once (the operator allowed loopback then, or the name resolved to a
    public address then) is checked again before each attempt: refused, nothing is sent."""
    with maker() as s:
        create(s, webhook_world.admin, webhook_world.org, url=receiver.url)
        s.commit()
    _emit_version(maker, webhook_world.org)
    stats = delivery_pass.deliver_pending(maker)  # the default policy: nothing internal
    assert (stats.attempted, stats.retrying) == (1, 1)
    assert receiver.requests == []
    with maker() as s:
        [delivery] = s.scalars(select(WebhookDelivery)).all()
        assert delivery.last_status_code is None
        assert delivery.last_error is not None
        assert delivery.last_error.startswith("refusing to send requests to 127.0.0.1")
