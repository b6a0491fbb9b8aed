"""How the web page shows values: sizes, counts, times, digests, JSON (its template filters).

An empty value shows as an en dash, never as ``None`` or a blank cell.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from loreg.units import format_bytes

DASH = "\N{EN DASH}"  # shown for an empty value
TIMES = "\N{MULTIPLICATION SIGN}"


def human_size(n: int | None) -> str:
    return DASH if n is None else format_bytes(n)


def human_count(n: int | None) -> str:
    if n is None:
        return DASH
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def when(value: datetime | None) -> str:
    if value is None:
        return DASH
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_digest(digest: str | None) -> str:
    if not digest:
        return DASH
    return digest.removeprefix("sha256:")[:12]


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def targets_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value) if value is not None else DASH


def as_text(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)
