"""Webhook requests and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

EventType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^(\*|[a-z]+\.[a-z]+)$")
]
NoNulText = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^[^\x00]*$",
        examples=["https://ci.example.com/hooks/loreg"],
    )
    events: list[EventType] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=16,
        description="Event types, or ['*'] for all.",
        examples=[["version.created", "tag.moved"]],
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        pattern=r"^[\x21-\x7e]+$",
        description="Signing secret; generated when omitted.",
    )
    active: bool = True
    description: NoNulText = ""


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2048, pattern=r"^[^\x00]*$")
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=16)
    active: bool | None = None
    description: NoNulText | None = None


class WebhookOut(BaseModel):
    id: int
    namespace: str
    url: str
    events: list[str]
    active: bool
    description: str
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown once: verify X-Loreg-Signature with it.")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[dict[str, Any]]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
