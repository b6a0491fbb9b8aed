"""File lists: path rules and the canonical manifest digest."""

from __future__ import annotations

import hashlib

import pytest

from loreg.errors import InvalidInput, TooLarge
from loreg.services.manifests import FileEntry, check_entries, manifest_digest

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_digest_is_canonical() -> None:
    one = [FileEntry("b.json", B, 2), FileEntry("a.safetensors", A, 10)]
    assert manifest_digest(one) == manifest_digest(list(reversed(one)))
    expected = hashlib.sha256(
        f'[["a.safetensors","{A}",10],["b.json","{B}",2]]'.encode()).hexdigest()
    assert manifest_digest(one) == "sha256:" + expected
    assert manifest_digest(one) != manifest_digest([FileEntry("b.json", B, 3), one[1]])
    assert manifest_digest(one) != manifest_digest([FileEntry("c.json", B, 2), one[1]])


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "a/./b", "a\\b", "x\x00", "", ".",
                                  "a/..", "C:x", "x" * 600])
def test_bad_paths(path: str) -> None:
    with pytest.raises(InvalidInput):
        check_entries([FileEntry(path, A, 1)])


def test_entries() -> None:
    assert [f.path for f in check_entries([FileEntry("z", A, 1), FileEntry("d/a", B, 1)])] \
        == ["d/a", "z"]
    with pytest.raises(InvalidInput):
        check_entries([FileEntry("a", A, 1), FileEntry("a", B, 1)])
    with pytest.raises(InvalidInput):
        check_entries([FileEntry("a", "sha256:xyz", 1)])
    with pytest.raises(InvalidInput):
        check_entries([FileEntry("a", A, -1)])
    with pytest.raises(TooLarge):
        check_entries([FileEntry("a", A, 6), FileEntry("b", B, 5)], max_total=10)
