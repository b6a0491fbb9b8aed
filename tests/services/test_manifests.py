"""File lists: path rules, duplicates and size limits."""

from __future__ import annotations

import pytest

from loreg.errors import InvalidInput, TooLarge
from loreg.refs import FileEntry
from loreg.services.manifests import check_entries

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    "path", ["../x", "/abs", "a//b", "a/./b", "a\\b", "x\x00", "", ".", "a/..", "C:x", "x" * 600]
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(InvalidInput):
        check_entries([FileEntry(path, A, 1)])


def test_entries() -> None:
    assert [f.path for f in check_entries([FileEntry("z", A, 1), FileEntry("d/a", B, 1)])] == [
        "d/a",
        "z",
    ]
    with pytest.raises(InvalidInput):
        check_entries([FileEntry("a", A, 1), FileEntry("a", B, 1)])
    with pytest.raises(InvalidInput):
        check_entries([FileEntry("a", "sha256:xyz", 1)])
    with pytest.raises(InvalidInput):
        check_entries([FileEntry("a", A, -1)])
    with pytest.raises(TooLarge):
        check_entries([FileEntry("a", A, 6), FileEntry("b", B, 5)], max_total=10)
