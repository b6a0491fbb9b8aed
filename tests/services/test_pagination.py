"""Opaque cursors: round trip, and garbage is a 400."""

from __future__ import annotations

import pytest

from loreg.errors import InvalidInput
from loreg.services.pagination import cursor_int, decode_cursor, encode_cursor


def test_roundtrip() -> None:
    c = encode_cursor("adapters", {"id": 42})
    assert cursor_int(decode_cursor("adapters", c), "id") == 42
    assert decode_cursor("adapters", None) is None


@pytest.mark.parametrize(
    "bad",
    [
        "!!",
        "e30",
        "x" * 2000,
        encode_cursor("versions", {"id": 1}),
        encode_cursor("adapters", {"id": "1"}),
        encode_cursor("adapters", {"id": -1}),
    ],
)
def test_garbage(bad: str) -> None:
    with pytest.raises(InvalidInput):
        cursor_int(decode_cursor("adapters", bad), "id")
