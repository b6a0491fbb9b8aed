"""Access bookkeeping: who has proven possession of a blob, and the web UI's sign-in sessions.

``BlobGrant``: a digest is not a capability (docs/security.md). A namespace holds a blob
when someone proved possession of its bytes on the namespace's behalf: a member uploaded them
(the upload streams and verifies every byte; it grants the uploader's personal namespace), or
a version of the namespace lists them (the push grants the version's namespace, so the grant
outlives a soft delete). A caller may then reference the blob in a new version, or read it,
when it may read a namespace that holds it, or something that lists it (a live version it
may read, a base model, an output of a job it may see). Grants go with their blob
(``ON DELETE CASCADE``): GC never keeps a blob for a grant.

``UiSession``: the web UI's cookie carries a random session id, never the API token. The
row maps the id's SHA-256 to the token it signed in with; signing out (or revoking the
token, or the expiry) ends it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from loreg.db.base import Base, utcnow
from loreg.db.models import DIGEST_LEN

SESSION_HASH_LEN = 64


class BlobGrant(Base):
    """Namespace ``namespace_id`` has proven possession of blob ``digest``."""

    __tablename__ = "blob_grants"
    __table_args__ = (Index(None, "namespace_id", "digest"),)

    digest: Mapped[str] = mapped_column(
        String(DIGEST_LEN), ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True
    )
    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UiSession(Base):
    """A signed-in browser: the SHA-256 of its cookie's random id -> the API token used."""

    __tablename__ = "ui_sessions"

    id_hash: Mapped[str] = mapped_column(String(SESSION_HASH_LEN), primary_key=True)
    token_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
