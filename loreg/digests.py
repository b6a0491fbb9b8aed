"""Content digests: one grammar, ``sha256:`` followed by 64 lower-case hex digits.

Blob digests, version digests and base fingerprints all have this form, and every layer
checks it with these functions before a digest reaches a query, a storage key or a path:
nothing a client sends can turn into ``../x`` or a foreign key. A malformed digest is an
``InvalidDigest`` (HTTP 400) wherever it is found.
"""

from __future__ import annotations

import hashlib
import re

from loreg.errors import InvalidDigest

PREFIX = "sha256:"
#: The whole grammar as a regular expression (API schemas anchor it with ``^...$``).
PATTERN = r"sha256:[0-9a-f]{64}"
_COMPILED = re.compile(PATTERN)


def digest_hex(digest: object) -> str:
    """The 64 hex digits of a valid digest; ``InvalidDigest`` for anything else."""
    if not is_valid_digest(digest):
        text = digest[:200] if isinstance(digest, str) else repr(digest)[:200]
        raise InvalidDigest(
            f"invalid digest {text[:100]!r}: expected 'sha256:' followed by 64 lower-case hex"
            " digits",
            details={"field": "digest", "digest": text},
        )
    assert isinstance(digest, str)
    return digest[len(PREFIX) :]


def validate_digest(digest: object) -> str:
    """``digest`` unchanged if it is valid, else ``InvalidDigest``."""
    digest_hex(digest)
    assert isinstance(digest, str)
    return digest


def is_valid_digest(digest: object) -> bool:
    return isinstance(digest, str) and _COMPILED.fullmatch(digest) is not None


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes (small documents: manifests, configs)."""
    return PREFIX + hashlib.sha256(data).hexdigest()
