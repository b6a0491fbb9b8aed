"""How the page shows values: the template filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from loreg.ui.formatting import (
    DASH,
    as_text,
    human_count,
    human_size,
    pretty_json,
    short_digest,
    targets_text,
    when,
)


def test_empty_values_are_a_dash() -> None:
    for show in (human_size, human_count, when, short_digest, targets_text, as_text):
        assert show(None) == DASH
    assert short_digest("") == DASH


def test_sizes_are_iec_and_counts_decimal() -> None:
    assert human_size(1536) == "1.5 KiB"
    assert human_size(0) == "0 B"
    assert human_count(999) == "999"
    assert human_count(8_030_000_000) == "8.03B"
    assert human_count(1_500) == "1.50K"


def test_times_are_utc() -> None:
    assert when(datetime(2025, 1, 2, 3, 4, tzinfo=UTC)) == "2025-01-02 03:04 UTC"
    assert when(datetime(2025, 1, 2, 3, 4)) == "2025-01-02 03:04 UTC"  # naive: stored as UTC
    plus_two = timezone(timedelta(hours=2))
    assert when(datetime(2025, 1, 2, 5, 4, tzinfo=plus_two)) == "2025-01-02 03:04 UTC"


def test_digests_targets_and_json() -> None:
    assert short_digest("sha256:" + "ab" * 32) == "abababababab"
    assert targets_text(["q_proj", "v_proj"]) == "q_proj, v_proj"
    assert targets_text("all-linear") == "all-linear"
    assert pretty_json({"b": 1, "a": [1]}) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'
    assert as_text({"b": 1, "a": 2}) == '{"a": 2, "b": 1}' and as_text("x") == "x"
