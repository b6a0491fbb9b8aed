"""Query parameters of the pages: optional text, whole numbers, the page size."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from loreg.errors import InvalidInput

PAGE_SIZE = 25

Text = Annotated[str | None, Query(max_length=1000)]


def opt(value: str | None) -> str | None:
    value = value.strip() if value is not None else None
    return value or None


def whole_number(value: str | None, field: str) -> int | None:
    value = opt(value)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidInput(f"{field} must be a whole number", details={"field": field})
    return int(value)


def version_number(value: str | None) -> int | None:
    value = opt(value)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9 or int(value) < 1:
        raise InvalidInput("a version is a number", details={"value": value})
    return int(value)
