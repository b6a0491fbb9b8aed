"""Response bodies of the audit log endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor: str | None = Field(description="User name of whoever acted; null for the system.")
    action: str
    target_type: str
    target: str
    details: dict[str, Any]
    request_id: str | None


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next (older) page.")
