"""Names, references and version digests: the grammar of docs/design.md §3, nothing path-like."""

from __future__ import annotations

import hashlib

import pytest

from loreg.errors import InvalidInput
from loreg.refs import (
    FileEntry,
    manifest_digest,
    parse_ref,
    parse_version_selector,
    validate_base_name,
    validate_name,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "ref,kind,value",
    [
        ("acme/bot", "tag", "latest"),
        ("acme/bot:prod", "tag", "prod"),
        ("acme/bot@7", "number", "7"),
        (f"acme/bot@{DIGEST}", "digest", DIGEST),
        ("a.b_c-d/x1", "tag", "latest"),
    ],
)
def test_parse_ref(ref: str, kind: str, value: str) -> None:
    parsed = parse_ref(ref)
    assert (parsed.kind, parsed.value) == (kind, value)
    assert str(parsed.adapter) == ref.split(":")[0].split("@")[0]


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "acme",
        "acme/",
        "/bot",
        "acme/bot/x",
        "Acme/bot",
        "acme/Bot",
        "acme/a..b",
        "../bot",
        "acme/..",
        "acme/bot@0",
        "acme/bot@-1",
        "acme/bot@x",
        "acme/bot@sha256:abc",
        "acme/bot:",
        "acme/bot:UP",
        "acme/bot@" + "9" * 20,
        "acme/" + "x" * 97,
        "acme/bot\x00",
        "acme/.bot",
        "acme/bot:a@1x",
    ],
)
def test_bad_refs(ref: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ref(ref)


def test_names() -> None:
    assert validate_name("x" * 96) == "x" * 96
    for bad in ("x" * 97, "", "a/b", "A", "-a", "a b", "a..b", "é"):
        with pytest.raises(InvalidInput):
            validate_name(bad)
    assert parse_version_selector("12") == ("number", "12")
    with pytest.raises(InvalidInput):
        parse_version_selector("latest")


def test_base_names_keep_case() -> None:
    assert validate_base_name("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    assert validate_base_name("gpt2") == "gpt2"
    for bad in ("a/b/c", "../x", "a/..", "a/", "/a", "a b", "a/-b", "x" * 200):
        with pytest.raises(InvalidInput):
            validate_base_name(bad)


A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_digest_is_canonical() -> None:
    one = [FileEntry("b.json", B, 2), FileEntry("a.safetensors", A, 10)]
    assert manifest_digest(one) == manifest_digest(list(reversed(one)))
    expected = hashlib.sha256(
        f'[["a.safetensors","{A}",10],["b.json","{B}",2]]'.encode()
    ).hexdigest()
    assert manifest_digest(one) == "sha256:" + expected
    assert manifest_digest(one) != manifest_digest([FileEntry("b.json", B, 3), one[1]])
    assert manifest_digest(one) != manifest_digest([FileEntry("c.json", B, 2), one[1]])
