"""Bodies of the health endpoints."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
