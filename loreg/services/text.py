"""Free text (labels, descriptions, reasons): one rule for what both backends can store.

PostgreSQL refuses a NUL character in text and JSON columns, SQLite stores it; a lone UTF-16
surrogate cannot be encoded at all. Checking here, before any SQL, gives the same clear 400
on every backend instead of an answer that depends on the database.
"""

from __future__ import annotations

import re

from loreg.errors import InvalidInput

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str, *, field: str) -> str:
    """``value`` unchanged, or ``InvalidInput`` naming ``field`` if it holds a NUL character
    or a lone surrogate."""
    if _UNSTORABLE.search(value):
        raise InvalidInput(
            f"{field} contains a NUL character or an unpaired surrogate, which cannot be "
            "stored: remove it and try again",
            details={"field": field},
        )
    return value
