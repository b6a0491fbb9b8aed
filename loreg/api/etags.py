"""Entity tags and ``If-None-Match``: one reading of the header for every cached answer."""

from __future__ import annotations

import hashlib


def etag_of(body: bytes) -> str:
    """A strong tag for a response body."""
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def none_match(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (or ``*``): the client's copy is
    current and a 304 may answer. Weak tags compare as their strong form."""
    if header is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags
