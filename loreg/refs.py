"""Names, references and version digests (docs/design.md §3): what client and server share.

Every name that reaches a query or a storage key went through one of these functions, so a
name can never be a path: anything outside the grammar is an ``InvalidInput`` (HTTP 400).
The client checks references with the same functions before it sends them, and computes a
version's digest (``manifest_digest``) exactly as the server does. Pure: the standard
library and ``loreg.errors`` only, so the light client install can import it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from loreg.digests import validate_digest
from loreg.errors import InvalidInput

MAX_NAME_LEN = 96
MAX_BASE_NAME_LEN = 96 * 2 + 1
DEFAULT_TAG = "latest"

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
# Hugging Face repo-id form: letters, digits, -_. ; at most one "/"; case kept.
_BASE_PART_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TAG_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")

RefKind = Literal["tag", "number", "digest"]


def validate_name(value: str, *, what: str = "name") -> str:
    """A namespace, adapter or tag name: lower-case ``[a-z0-9][a-z0-9._-]*``, <= 96 chars.

    ``..`` is refused outright even though the characters are allowed, so a name never looks
    like a parent-directory reference anywhere it is echoed or used.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must not be empty", details={"field": what})
    if len(value) > MAX_NAME_LEN:
        raise InvalidInput(
            f"{what} is longer than {MAX_NAME_LEN} characters",
            details={"field": what, "length": len(value)},
        )
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidInput(
            f"invalid {what} {value[:100]!r}: use lower-case letters, digits and . _ - "
            "(starting with a letter or digit)",
            details={"field": what},
        )
    return value


def validate_tag(value: str) -> str:
    """Tags share the name grammar (``latest``, ``prod``, ``v1.2``)."""
    return validate_name(value, what="tag")


def validate_base_name(value: str) -> str:
    """A base model name in HF repo-id form (``meta-llama/Llama-3.1-8B``), case kept."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("base model name must not be empty", details={"field": "base"})
    if len(value) > MAX_BASE_NAME_LEN:
        raise InvalidInput(
            "base model name is too long", details={"field": "base", "length": len(value)}
        )
    parts = value.split("/")
    if len(parts) > 2 or any(
        len(p) > MAX_NAME_LEN or not _BASE_PART_RE.fullmatch(p) or ".." in p for p in parts
    ):
        raise InvalidInput(
            f"invalid base model name {value[:100]!r}: use the Hugging Face repo-id form "
            "'org/name' (letters, digits, - _ .)",
            details={"field": "base"},
        )
    return value


@dataclass(frozen=True)
class AdapterName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Ref:
    """A parsed reference: ``ns/name`` (tag latest), ``:tag``, ``@7`` or ``@sha256:HEX``."""

    namespace: str
    name: str
    kind: RefKind
    value: str  # the tag, the number as text, or the digest

    @property
    def adapter(self) -> AdapterName:
        return AdapterName(self.namespace, self.name)

    @property
    def number(self) -> int:
        return int(self.value)

    def __str__(self) -> str:
        sep = {"tag": ":", "number": "@", "digest": "@"}[self.kind]
        return f"{self.namespace}/{self.name}{sep}{self.value}"


def parse_adapter_name(namespace: str, name: str) -> AdapterName:
    return AdapterName(validate_name(namespace, what="namespace"), validate_name(name))


def parse_version_selector(value: str) -> tuple[RefKind, str]:
    """The part after ``@`` (or a route's ``{ref}``): a version number or ``sha256:HEX``."""
    if value.startswith("sha256:"):
        return "digest", validate_digest(value)
    if value.isascii() and value.isdigit() and len(value) <= 9:
        number = int(value)
        if number >= 1:
            return "number", str(number)
    raise InvalidInput(
        f"invalid version {value[:100]!r}: expected a number >= 1 or sha256:<hex>",
        details={"field": "version"},
    )


def parse_ref(ref: str) -> Ref:
    """Parse any reference form of docs/design.md §3."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("reference must not be empty", details={"field": "ref"})
    if len(ref) > 400:
        raise InvalidInput("reference is too long", details={"field": "ref"})
    kind: RefKind
    if "@" in ref:
        path, _, selector = ref.partition("@")
        kind, value = parse_version_selector(selector)
    elif ":" in ref:
        path, _, tag = ref.partition(":")
        kind, value = "tag", validate_tag(tag)
    else:
        path, kind, value = ref, "tag", DEFAULT_TAG
    parts = path.split("/")
    if len(parts) != 2:
        raise InvalidInput(
            f"invalid reference {ref[:100]!r}: expected namespace/name[:tag|@version|@sha256:hex]",
            details={"field": "ref"},
        )
    adapter = parse_adapter_name(parts[0], parts[1])
    return Ref(adapter.namespace, adapter.name, kind, value)


@dataclass(frozen=True)
class FileEntry:
    """One file of a version, a base or a job's outputs: relative path, blob digest, size."""

    path: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, "size": self.size}


def manifest_digest(files: Iterable[FileEntry]) -> str:
    """``sha256:`` of the canonical manifest: compact JSON of ``[[path, digest, size], ...]``
    sorted by path (UTF-8, no spaces). Never change it: stored digests depend on it."""
    records = sorted([f.path, f.digest, f.size] for f in files)
    raw = json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(raw).hexdigest()
