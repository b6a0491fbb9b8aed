"""Blobs: which digests are missing, storing one with limits, who holds and may read one.

A ``blobs`` row exists only for bytes the store has verified: ``put`` streams into the store
first (which hashes while writing and publishes nothing on a mismatch) and adds the row
afterwards, in the caller's transaction. A crash between the two leaves an unreferenced
object in the store that the next upload of the same digest adopts and GC collects.

A digest is not a capability. Content-addressed digests are unguessable only for content
nobody else has seen, a common file (an ``adapter_config.json``) can be guessed, and digests
travel in logs, job results and webhook payloads. So a caller *holds* a blob, and may read
it or reference it in a new version, only when it has proven possession of the bytes or may
read something that lists them (OCI's cross-repository mount rule):

- a namespace it may read holds a grant for it (``BlobGrant``): a member uploaded the bytes
  (:func:`record_blob`, which every upload path calls, grants the uploader's personal
  namespace) or a version of that namespace lists them;
- a live version of an adapter it may read lists it;
- a base model lists it (base models are the registry's shared catalogue: any signed-in
  caller);
- it is an output of a succeeded job the caller may see.

Site admins hold every blob. To everyone else a blob they do not hold is exactly a missing
one: ``POST /uploads`` asks for it (uploading it proves possession), a manifest naming it
fails as if it had never been uploaded, and ``GET`` answers 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from loreg.db.access import BlobGrant
from loreg.db.base import utcnow
from loreg.db.models import (
    Adapter,
    AdapterVersion,
    BaseModelFile,
    Blob,
    VersionFile,
    Visibility,
)
from loreg.db.session import dialect_insert
from loreg.digests import validate_digest
from loreg.errors import InvalidInput, NotFound
from loreg.services import audit
from loreg.services.permissions import (
    Actor,
    Principal,
    readable_namespace_ids,
    require_scope,
)
from loreg.storage import BlobStore

MAX_CHECK_DIGESTS = 10_000
_CHUNK = 500


class BlobUnknown(NotFound):
    """No such blob, or not one the caller may read (indistinguishable on purpose)."""

    code = "blob_not_found"


def blob_not_found(digest: str) -> BlobUnknown:
    return BlobUnknown(f"blob {digest} not found", details={"digest": digest})


def missing(session: Session, actor: Actor, digests: Iterable[str]) -> list[str]:
    """The digests (deduplicated, in the order asked) the caller must upload: those with no
    verified blob, and those the caller does not hold (uploading them proves possession).

    Needs a write-scoped token: only writers upload.
    """
    require_scope(actor, "write")
    wanted: list[str] = []
    seen: set[str] = set()
    for digest in digests:
        validate_digest(digest)
        if digest not in seen:
            seen.add(digest)
            wanted.append(digest)
    if len(wanted) > MAX_CHECK_DIGESTS:
        raise InvalidInput(
            f"at most {MAX_CHECK_DIGESTS} digests per check", details={"count": len(wanted)}
        )
    held = held_blobs(session, actor, wanted)
    return [d for d in wanted if d not in held]


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def blob_sizes(session: Session, digests: Iterable[str]) -> dict[str, int]:
    """Digest -> size of the verified blobs among ``digests`` (queried 500 at a time).

    Says nothing about who may use them: answer callers with :func:`held_blobs`.
    """
    sizes: dict[str, int] = {}
    for chunk in _chunks(sorted(set(digests))):
        sizes.update(
            {
                d: s
                for d, s in session.execute(
                    select(Blob.digest, Blob.size).where(Blob.digest.in_(chunk))
                )
            }
        )
    return sizes


def held_blobs(session: Session, actor: Actor, digests: Iterable[str]) -> dict[str, int]:
    """Digest -> size of the verified blobs among ``digests`` that ``actor`` holds (see the
    module docstring); the others are, to this caller, missing."""
    present = blob_sizes(session, digests)
    if not present or (actor is not None and actor.is_admin):
        return present
    rest = sorted(present)
    held: set[str] = set()

    def take(query_for: Any) -> None:
        nonlocal rest
        for chunk in _chunks(rest):
            held.update(session.scalars(query_for(chunk)))
        rest = [d for d in rest if d not in held]

    namespaces = readable_namespace_ids(session, actor)
    assert namespaces is not None  # None only for site admins, handled above
    if namespaces:
        take(
            lambda chunk: select(BlobGrant.digest).where(
                BlobGrant.digest.in_(chunk), BlobGrant.namespace_id.in_(namespaces)
            )
        )
    visible: Any = Adapter.visibility == Visibility.PUBLIC.value
    if namespaces:
        visible = or_(visible, Adapter.namespace_id.in_(namespaces))
    if rest:
        take(
            lambda chunk: (
                select(VersionFile.blob_digest)
                .distinct()
                .join(AdapterVersion, AdapterVersion.id == VersionFile.version_id)
                .join(Adapter, Adapter.id == AdapterVersion.adapter_id)
                .where(
                    VersionFile.blob_digest.in_(chunk), AdapterVersion.deleted_at.is_(None), visible
                )
            )
        )
    if rest and actor is not None:
        take(
            lambda chunk: (
                select(BaseModelFile.blob_digest)
                .distinct()
                .where(BaseModelFile.blob_digest.in_(chunk))
            )
        )
    if rest and actor is not None:
        from loreg.services import jobs

        held.update(jobs.outputs_visible_to(session, actor, rest))
    return {d: present[d] for d in present if d in held}


def grant(session: Session, digests: Iterable[str], namespace_id: int) -> None:
    """Record that namespace ``namespace_id`` holds these (verified) blobs; idempotent."""
    now = utcnow()
    rows = [
        {"digest": d, "namespace_id": namespace_id, "created_at": now} for d in sorted(set(digests))
    ]
    insert = dialect_insert(session)
    for i in range(0, len(rows), _CHUNK):
        session.execute(
            insert(BlobGrant)
            .values(rows[i : i + _CHUNK])
            .on_conflict_do_nothing(index_elements=["digest", "namespace_id"])
        )


def authorize_upload(actor: Actor, digest: str) -> Principal:
    """Checks made before a single body byte is read: the digest form and the token."""
    validate_digest(digest)
    return require_scope(actor, "write")


def store_blob(store: BlobStore, digest: str, source: BinaryIO, *, max_size: int) -> int:
    """Stream ``source`` into the store (verified, bounded); returns the size. No DB work,
    so the API can run it in a worker thread while the request body arrives."""
    validate_digest(digest)
    return store.put(digest, source, max_size=max_size)


def insert_blob_row(session: Session, digest: str, size: int) -> bool:
    """Insert a stored blob's row unless it exists; True when this call created it.

    Safe against a concurrent insert of the same digest: the conflict is ignored.
    """
    stmt = (
        dialect_insert(session)(Blob)
        .values(digest=digest, size=size, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(Blob.digest)
    )
    return session.execute(stmt).first() is not None


def record_blob(session: Session, actor: Actor, digest: str, size: int) -> tuple[Blob, bool]:
    """Add the row for a blob the store has verified from ``actor``'s upload; ``(blob,
    created)``. Every upload path calls this after the store verified the bytes: the upload
    proved possession, so the uploader's personal namespace is granted the blob (also when
    the blob existed already).

    Concurrent uploads of one digest both succeed: the insert ignores a conflicting row.
    """
    validate_digest(digest)
    principal = require_scope(actor, "write")
    created = insert_blob_row(session, digest, size)
    blob = session.get(Blob, digest, populate_existing=True)
    assert blob is not None
    grant(session, [digest], principal.namespace_id)
    if created:
        audit.record(session, actor, "blob.upload", "blob", digest, {"size": size})
    return blob, created


def recorded(session: Session, digests: Iterable[str]) -> set[str]:
    """Those of ``digests`` that have a blob row (something may reference them)."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(digests))):
        found.update(session.scalars(select(Blob.digest).where(Blob.digest.in_(chunk))))
    return found


def get_blob(session: Session, digest: str) -> Blob | None:
    validate_digest(digest)
    return session.get(Blob, digest)


def require_readable_blob(session: Session, actor: Actor, digest: str) -> Blob:
    """The blob row if ``actor`` holds it, else ``NotFound`` (missing or not held alike)."""
    validate_digest(digest)
    if digest not in held_blobs(session, actor, [digest]):
        raise blob_not_found(digest)
    blob = session.get(Blob, digest)
    assert blob is not None
    return blob
