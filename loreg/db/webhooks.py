"""Webhooks: per-namespace subscriptions, the event outbox and the delivery log.

The outbox (:class:`WebhookEvent`) is written in the same transaction as the change it
describes (``loreg.services.events.emit``), so an event exists exactly when its change
committed. A delivery pass (``loreg.background.webhooks.deliver_pending``, run by the
worker) fans each new event out to the matching webhooks as :class:`WebhookDelivery` rows
and posts them, retrying with exponential backoff; each delivery keeps its attempt log.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loreg.db.base import Base, JSONType, enum_check, utcnow

URL_MAX = 2048
EVENT_TYPE_MAX = 64


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _event_id() -> str:
    return uuid.uuid4().hex


class Webhook(Base):
    """A URL in a namespace that receives signed POSTs for the event types it subscribes to.

    ``events`` is a list of event types (``["*"]`` for all). ``secret`` signs the bodies
    (HMAC-SHA256); it must be kept in clear to sign, so the table is as sensitive as tokens'
    plaintext would be (docs/security.md).
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(URL_MAX))
    secret: Mapped[str] = mapped_column(String(256))
    events: Mapped[list[str]] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    deliveries: Mapped[list[WebhookDelivery]] = relationship(
        back_populates="webhook", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction of the change.

    ``dispatched_at`` is set once the event has been fanned out into deliveries. ``id`` is
    what receivers see as ``X-Loreg-Event-Id`` (stable across retries: deduplicate on it).
    ``namespace_id`` is NULL for events no webhook can subscribe to (none today).
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index(None, "dispatched_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=_event_id)
    type: Mapped[str] = mapped_column(String(EVENT_TYPE_MAX))
    namespace_id: Mapped[int | None] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event to one webhook: its state, attempts and log of attempts.

    ``attempt_log`` holds the most recent attempts (time, status code, error, duration);
    ``attempts`` counts all of them. A pending delivery is due at ``next_attempt_at``; a
    delivery pass that takes one pushes that time forward by a lease, so two workers never
    post the same attempt.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        enum_check("status", DeliveryStatus),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    webhook: Mapped[Webhook] = relationship(back_populates="deliveries")
    event: Mapped[WebhookEvent] = relationship()
