"""Shared pydantic pieces: the error body, name types, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from loreg.errors import InvalidInput

#: docs/design.md §3, as a JSON-schema pattern (``..`` is refused by the services).
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
NAME_MAX = 96

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
#: Free text (descriptions, filters): anything but NUL, which PostgreSQL cannot store;
#: refusing it everywhere keeps SQLite and PostgreSQL deployments alike.
NO_NUL_PATTERN = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN)]
RoleName = Annotated[str, Field(pattern=r"^(read|write|admin)$", examples=["write"])]


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. 'not_found'.")
    message: str = Field(description="Human-readable explanation.")
    details: Any = Field(default=None, description="Structured context; shape depends on code.")


class ErrorResponse(BaseModel):
    """The body of every error answer (docs/design.md §8)."""

    error: ErrorBody


class Schema(BaseModel):
    """Base of response models: built from ORM objects or dicts."""

    model_config = ConfigDict(from_attributes=True)


def as_utc(value: datetime | None, field: str) -> datetime | None:
    """An aware UTC datetime (naive input is taken as UTC); a 400 for unrepresentable ones."""
    if value is None:
        return None
    try:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"{field} is out of range", details={"field": field}) from exc
