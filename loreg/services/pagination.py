"""Opaque cursors for keyset pagination: base64url of a small JSON object.

Clients pass back what they were given and must not build cursors themselves; a cursor that
does not decode is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from loreg.errors import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_of(rows: list[T], limit: int, kind: str, key: Callable[[T], dict[str, Any]]) -> Page[T]:
    """A page from ``rows`` fetched with ``.limit(limit + 1)``: the extra row only says that
    a next page exists, whose cursor is ``key`` of this page's last row."""
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, encode_cursor(kind, key(rows[-1])))


def encode_cursor(kind: str, values: dict[str, Any]) -> str:
    raw = json.dumps({"k": kind, **values}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> dict[str, Any] | None:
    """The values of a cursor made by ``encode_cursor(kind, ...)``; ``None`` for no cursor."""
    if cursor is None or cursor == "":
        return None
    try:
        if len(cursor) > 1000:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(doc, dict) or doc.pop("k", None) != kind:
            raise ValueError("wrong kind")
        return doc
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidInput(
            "invalid cursor: pass back the next_cursor of the previous page",
            details={"field": "cursor"},
        ) from None


def cursor_int(doc: dict[str, Any] | None, key: str) -> int | None:
    if doc is None:
        return None
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        raise InvalidInput("invalid cursor", details={"field": "cursor"})
    return value


def cursor_str(doc: dict[str, Any] | None, key: str, *, max_length: int = 256) -> str | None:
    if doc is None:
        return None
    value = doc.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise InvalidInput("invalid cursor", details={"field": "cursor"})
    return value


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", details={"limit": limit})
    return limit
