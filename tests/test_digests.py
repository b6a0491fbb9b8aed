"""The digest grammar: one check, one error, whatever layer asks."""

from __future__ import annotations

import hashlib
import re

import pytest

from loreg.digests import PATTERN, digest_hex, is_valid_digest, sha256_digest, validate_digest
from loreg.errors import InvalidDigest, InvalidInput

HEX = "0123456789abcdef" * 4
GOOD = "sha256:" + HEX

BAD = [
    "sha256:" + HEX.upper(),
    "sha256:" + HEX[:-1],
    "sha256:" + HEX + "0",
    "sha256:" + HEX + "\n",
    "SHA256:" + HEX,
    "sha512:" + HEX,
    HEX,
    "sha256:../../etc/passwd",
    "",
    None,
    64,
    b"sha256:" + HEX.encode(),
]


def test_a_good_digest_passes_unchanged() -> None:
    assert validate_digest(GOOD) == GOOD
    assert digest_hex(GOOD) == HEX
    assert is_valid_digest(GOOD)


@pytest.mark.parametrize("bad", BAD)
def test_anything_else_is_an_invalid_digest(bad: object) -> None:
    assert not is_valid_digest(bad)
    with pytest.raises(InvalidDigest) as err:
        validate_digest(bad)
    assert isinstance(err.value, InvalidInput)  # a 400 wherever it is raised
    assert err.value.code == "invalid_digest"
    assert "64 lower-case hex digits" in err.value.message
    assert err.value.details["field"] == "digest"
    with pytest.raises(InvalidDigest):
        digest_hex(bad)


def test_a_long_bad_digest_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidDigest) as err:
        validate_digest("x" * 10_000)
    assert len(err.value.message) < 300 and len(err.value.details["digest"]) == 200


def test_sha256_digest_is_in_the_grammar() -> None:
    digest = sha256_digest(b"hello\n")
    assert digest == "sha256:" + hashlib.sha256(b"hello\n").hexdigest()
    assert validate_digest(digest) == digest


def test_the_schema_pattern_is_the_grammar() -> None:
    assert re.fullmatch(PATTERN, GOOD)
    assert not any(isinstance(b, str) and re.fullmatch(PATTERN, b) for b in BAD)
