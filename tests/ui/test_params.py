"""Query parameters: blank is absent, numbers are whole and bounded, never a 500."""

from __future__ import annotations

import pytest

from loreg.errors import InvalidInput
from loreg.ui.params import opt, version_number, whole_number


def test_blank_is_absent() -> None:
    assert opt(None) is None and opt("  ") is None and opt(" acme ") == "acme"


@pytest.mark.parametrize(("text", "value"), [(None, None), ("", None), (" 8 ", 8), ("0", 0)])
def test_whole_numbers(text: str | None, value: int | None) -> None:
    assert whole_number(text, "rank_min") == value


@pytest.mark.parametrize("text", ["x", "-1", "1.5", "\u0661", "9" * 10])
def test_not_whole_numbers(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        whole_number(text, "rank_min")
    assert err.value.details == {"field": "rank_min"}


def test_version_numbers_start_at_one() -> None:
    assert version_number("3") == 3 and version_number(None) is None
    for bad in ("0", "00", "-1", "v1", "9" * 10):
        with pytest.raises(InvalidInput):
            version_number(bad)
