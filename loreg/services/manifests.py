"""File lists of versions and base models: path rules, the canonical digest, blob checks.

``FileEntry`` and ``manifest_digest`` (*the* definition of a version's digest, docs/design.md
§3) live in ``loreg.refs``, shared with the client, so client, server and worker agree on it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from sqlalchemy.orm import Session

from loreg.digests import validate_digest
from loreg.errors import InvalidInput
from loreg.refs import FileEntry
from loreg.services.blobs import held_blobs
from loreg.services.permissions import Actor

MAX_FILES = 1000
MAX_PATH_LEN = 512
_BAD_PATH_CHARS = set('\\:*?"<>|')
#: Unicode categories refused in paths: control (Cc), format (Cf: the bidi overrides and
#: isolates that make ``evil\u202egnp.exe`` display as ``evilexe.png``, zero-width
#: characters), line and paragraph separators (Zl, Zp) and lone surrogates (Cs).
_BAD_PATH_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


class BlobsMissing(InvalidInput):
    """The manifest names blobs the registry does not have (upload them first)."""

    code = "blob_unknown"


def _bad_char(c: str) -> bool:
    return c in _BAD_PATH_CHARS or unicodedata.category(c) in _BAD_PATH_CATEGORIES


def validate_path(path: str) -> str:
    """A relative POSIX path inside the version's folder: no ``..``, no absolute paths, no
    character that hides or disguises what a file is called (controls, bidi overrides)."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LEN:
        raise InvalidInput("file paths must be 1-512 characters", details={"path": str(path)[:100]})
    parts = path.split("/")
    if (
        path.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or any(_bad_char(c) for c in path)
    ):
        raise InvalidInput(
            f"invalid file path {path[:100]!r}: use a relative path without '..', '.', empty "
            "parts, backslashes, control characters or invisible formatting characters "
            "(such as right-to-left overrides); rename the file and push again",
            details={"path": path[:200].encode("unicode_escape").decode("ascii")},
        )
    return path


def check_entries(files: Sequence[FileEntry], *, max_total: int | None = None) -> list[FileEntry]:
    """Validate a file list; return it sorted by path. Raises ``InvalidInput``/``TooLarge``."""
    from loreg.errors import TooLarge

    if len(files) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} files", details={"count": len(files)})
    seen: set[str] = set()
    total = 0
    for f in files:
        validate_path(f.path)
        validate_digest(f.digest)
        if isinstance(f.size, bool) or not isinstance(f.size, int) or f.size < 0:
            raise InvalidInput("file sizes must be integers >= 0", details={"path": f.path})
        if f.path in seen:
            raise InvalidInput(f"file {f.path!r} is listed twice", details={"path": f.path})
        seen.add(f.path)
        total += f.size
    if max_total is not None and total > max_total:
        raise TooLarge(
            f"the files add up to {total} bytes, over the limit of {max_total}",
            details={"size": total, "limit": max_total},
        )
    return sorted(files, key=lambda f: f.path)


def require_blobs(session: Session, actor: Actor, files: Sequence[FileEntry]) -> None:
    """Every file's blob exists (verified), ``actor`` holds it (``loreg.services.blobs``),
    and it has the stated size.

    A blob the actor does not hold fails exactly like one never uploaded (same code, same
    message), and a size mismatch names only the sizes the caller stated: the answer reveals
    nothing about blobs the caller has not proven it has.
    """
    sizes = held_blobs(session, actor, (f.digest for f in files))
    missing = [f.digest for f in files if f.digest not in sizes]
    if missing:
        raise BlobsMissing(
            f"{len(missing)} blob(s) named in the manifest were never uploaded: "
            "PUT /api/v1/blobs/<digest> first",
            details={"missing": sorted(set(missing))},
        )
    wrong = [
        {"path": f.path, "digest": f.digest, "size": f.size}
        for f in files
        if sizes[f.digest] != f.size
    ]
    if wrong:
        raise InvalidInput(
            "file sizes do not match their blobs: state each file's exact size in bytes",
            details={"files": wrong},
        )
