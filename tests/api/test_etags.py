"""``If-None-Match`` as every cached answer reads it."""

from __future__ import annotations

import pytest

from loreg.api.etags import etag_of, none_match


def test_a_body_has_one_strong_tag() -> None:
    assert etag_of(b"x") == etag_of(b"x") != etag_of(b"y")
    assert etag_of(b"x").startswith('"') and etag_of(b"x").endswith('"')


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"old", "abc"', True),
        ("*", True),
        ('"other"', False),
        ("abc", False),
        ("", False),
    ],
)
def test_none_match(header: str | None, matches: bool) -> None:
    assert none_match(header, '"abc"') is matches
