"""Versions pulled before, remembered by reference, so a pull can work without the registry.

Every online pull records the version's manifest under ``LOREG_HOME/cache/versions/`` (by its
digest) and the references it was reached by in ``cache/refs.json``: the reference as given
(``ns/name:tag``, ``ns/name``), ``ns/name@N`` and ``ns/name@sha256:...``, per registry URL.
With ``LOREG_OFFLINE=1`` (like ``HF_HUB_OFFLINE``) a pull looks the reference up there and
copies the blobs out of the content-addressed cache: no network at all. A digest reference
is found whichever registry it was pulled from (the digest names the content); a tag or a
number is the one recorded for this registry, as it was when last pulled. A recorded
manifest is trusted only if its files hash to its digest (``manifest_digest``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from loreg.client.errors import ApiError, NotCached
from loreg.client.models import Version
from loreg.refs import manifest_digest

REFS_FILE = "refs.json"
VERSIONS_DIR = "versions"
#: What is kept of a version document: enough to pull it and to say what it is.
_KEPT = ("namespace", "name", "ref", "number", "digest", "base", "tags", "created_at", "files")


def ref_forms(namespace: str, name: str, kind: str, value: str) -> str:
    """The one spelling of a reference used as a key (``ns/name`` is ``ns/name:latest``)."""
    sep = ":" if kind == "tag" else "@"
    return f"{namespace}/{name}{sep}{value}"


class VersionIndex:
    """``cache/refs.json`` plus ``cache/versions/<hex>.json``."""

    def __init__(self, cache_root: Path) -> None:
        self.root = cache_root
        self.refs_path = cache_root / REFS_FILE
        self.versions = cache_root / VERSIONS_DIR

    def _refs(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.refs_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _doc_path(self, digest: str) -> Path:
        return self.versions / (digest.removeprefix("sha256:") + ".json")

    def record(self, url: str, keys: list[str], version: Version) -> None:
        """Remember ``version`` under ``keys`` for registry ``url``; failures only cost
        offline availability, never the pull."""
        digest = version.digest
        if not digest.startswith("sha256:"):
            return
        sent = version.to_dict()
        doc = {k: sent[k] for k in _KEPT if k in sent}
        with contextlib.suppress(OSError):
            self.versions.mkdir(parents=True, exist_ok=True)
            _write_atomic(self._doc_path(digest), json.dumps(doc))
            refs = self._refs()
            table = refs.setdefault(url, {})
            if not isinstance(table, dict):
                table = refs[url] = {}
            for key in keys:
                table[key] = digest
            _write_atomic(self.refs_path, json.dumps(refs, indent=1, sort_keys=True))

    def lookup(self, url: str, key: str, *, digest: str | None = None) -> Version:
        """The version recorded for ``key`` (``digest``: any registry); ``NotCached`` else."""
        found: str | None = None
        refs = self._refs()
        if digest is not None:
            if any(isinstance(t, dict) and t.get(key) == digest for t in refs.values()):
                found = digest
        else:
            table = refs.get(url)
            value = table.get(key) if isinstance(table, dict) else None
            found = value if isinstance(value, str) else None
        version = self._load(found) if found else None
        if version is None:
            raise NotCached(
                f"LOREG_OFFLINE is set and {key} is not in the local cache "
                f"({self.root.absolute()}): pull it once with the registry reachable (unset "
                "LOREG_OFFLINE), or name a version pulled before (`ns/name@sha256:...`)",
                details={"ref": key, "cache": str(self.root.absolute())},
            )
        return version

    def _load(self, digest: str) -> Version | None:
        try:
            version = Version.from_api(json.loads(self._doc_path(digest).read_text()))
        except (OSError, ValueError, ApiError):  # missing, unreadable, malformed: not cached
            return None
        if manifest_digest(version.files) != digest:
            return None
        return version


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
