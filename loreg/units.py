"""Byte sizes as loreg shows them and reads them.

loreg shows every size in IEC binary units: ``512 B``, ``1.5 KiB``, ``3.0 GiB``, where
1 KiB = 1024 B. The command line, quota errors and the web page print the same text for the
same size, because they all call :func:`format_bytes`. A size a user types may take either
kind of prefix, each in its standard meaning: ``5GB`` is 5 * 10**9 bytes (what Hugging Face
means by a 5GB shard), ``5GiB`` is 5 * 2**30.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
GB = 10**9

_SHOWN = ("B", "KiB", "MiB", "GiB", "TiB")
_READ = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": KiB,
    "MIB": MiB,
    "GIB": GiB,
    "TIB": TiB,
}


def format_bytes(n: float | None) -> str:
    """``512 B``, ``1.5 KiB``, ``2.0 GiB`` ...; an unknown size (``None``) is ``""``."""
    if n is None:
        return ""
    size = float(n)
    for unit in _SHOWN[:-1]:
        if abs(size) < 1024:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {_SHOWN[-1]}"


def parse_size(text: str) -> int:
    """``5GB``, ``500MB``, ``2GiB``, ``1.5 MiB`` or a number of bytes; ``ValueError`` if not
    a positive size."""
    compact = text.strip().upper().replace(" ", "")
    number = compact.rstrip("KMGTIB")
    unit = compact[len(number) :]
    if unit not in _READ:
        raise ValueError(f"{text!r}: unknown unit {unit!r}")
    try:
        size = int(float(number) * _READ[unit])
    except OverflowError:  # inf, 1e999
        raise ValueError(f"{text!r}: not a finite size") from None
    if size <= 0:
        raise ValueError(f"{text!r}: a size must be positive")
    return size
