"""Byte sizes: shown in IEC binary units everywhere, read with either kind of prefix."""

from __future__ import annotations

import pytest

from loreg.units import GB, GiB, KiB, MiB, TiB, format_bytes, parse_size


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * MiB, "5.0 MiB"),
        (3 * GiB, "3.0 GiB"),
        (5 * GB, "4.7 GiB"),
        (2 * TiB, "2.0 TiB"),
        (5000 * TiB, "5000.0 TiB"),
        (-2048, "-2.0 KiB"),
        (None, ""),
    ],
)
def test_format_bytes(n: int | None, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("5GB", 5 * 10**9),
        ("500MB", 500 * 10**6),
        ("20KB", 20_000),
        ("2GiB", 2 * GiB),
        ("1.5 MiB", int(1.5 * MiB)),
        ("4kib", 4 * KiB),
        ("4096", 4096),
        ("4096B", 4096),
        (" 1 tb ", 10**12),
    ],
)
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize(
    "text", ["", "GB", "five", "5XB", "0", "-5MB", "0.0001B", "inf", "1e999GB", "nan"]
)
def test_parse_size_refuses_what_is_not_a_positive_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
