"""Blobs: which digests are missing, storing one with limits, and who may read one.

A ``blobs`` row exists only for bytes the store has verified: ``put`` streams into the store
first (which hashes while writing and publishes nothing on a mismatch) and adds the row
afterwards, in the caller's transaction. A crash between the two leaves an unreferenced
object in the store that the next upload of the same digest adopts and GC collects.

Reading a blob: content-addressed digests are unguessable only for content nobody else has
seen, and a common file (an ``adapter_config.json``) can be guessed, so a digest is not a
capability. A caller may read a blob when it can read something that references it: a live
version of an adapter it may read, a base model (base models are the registry's shared
catalogue: any authenticated caller), or an output of a job it may see. Site admins may read
any blob.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

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
from loreg.errors import InvalidInput, NotFound
from loreg.services import audit
from loreg.services.permissions import (
    Actor,
    Principal,
    is_site_admin,
    readable_namespace_ids,
    require_scope,
)
from loreg.storage import BlobStore, validate_digest

MAX_CHECK_DIGESTS = 10_000


class BlobUnknown(NotFound):
    """No such blob, or not one the caller may read (indistinguishable on purpose)."""

    code = "blob_not_found"


def blob_not_found(digest: str) -> BlobUnknown:
    return BlobUnknown(f"blob {digest} not found", details={"digest": digest})


def missing(session: Session, actor: Actor, digests: Iterable[str]) -> list[str]:
    """The digests (deduplicated, in the order asked) that have no verified blob row.

    Needs a write-scoped token: only writers upload, and answering reveals which contents
    exist.
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
    present = blob_sizes(session, wanted)
    return [d for d in wanted if d not in present]


def blob_sizes(session: Session, digests: Iterable[str]) -> dict[str, int]:
    """Digest -> size of the verified blobs among ``digests`` (queried 500 at a time)."""
    wanted = sorted(set(digests))
    sizes: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        sizes.update(
            {d: s for d, s in session.execute(
                select(Blob.digest, Blob.size).where(Blob.digest.in_(chunk))
            )}
        )
    return sizes


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
    stmt = (dialect_insert(session)(Blob)
            .values(digest=digest, size=size, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["digest"])
            .returning(Blob.digest))
    return session.execute(stmt).first() is not None


def record_blob(session: Session, actor: Actor, digest: str, size: int) -> tuple[Blob, bool]:
    """Add the row for a blob the store has verified; ``(blob, created)``.

    Concurrent uploads of one digest both succeed: the insert ignores a conflicting row.
    """
    validate_digest(digest)
    created = insert_blob_row(session, digest, size)
    blob = session.get(Blob, digest, populate_existing=True)
    assert blob is not None
    if created:
        audit.record(session, actor, "blob.upload", "blob", digest, {"size": size})
    return blob, created


def get_blob(session: Session, digest: str) -> Blob | None:
    validate_digest(digest)
    return session.get(Blob, digest)


def require_readable_blob(session: Session, actor: Actor, digest: str) -> Blob:
    """The blob row if ``actor`` may read it, else ``NotFound`` (missing or hidden alike)."""
    validate_digest(digest)
    blob = session.get(Blob, digest)
    if blob is None:
        raise blob_not_found(digest)
    if is_site_admin(actor) or (actor is not None and actor.is_admin):
        return blob
    namespaces = readable_namespace_ids(session, actor)
    visible = Adapter.visibility == Visibility.PUBLIC.value
    if namespaces:
        visible = or_(visible, Adapter.namespace_id.in_(namespaces))
    via_version = session.scalar(
        select(
            exists()
            .where(VersionFile.blob_digest == digest)
            .where(AdapterVersion.id == VersionFile.version_id)
            .where(AdapterVersion.deleted_at.is_(None))
            .where(Adapter.id == AdapterVersion.adapter_id)
            .where(visible)
        )
    )
    if via_version:
        return blob
    if actor is not None:
        via_base = session.scalar(select(exists().where(BaseModelFile.blob_digest == digest)))
        if via_base:
            return blob
        from loreg.services import jobs

        if jobs.artifact_digests_visible_to(session, actor, digest):
            return blob
    raise blob_not_found(digest)
