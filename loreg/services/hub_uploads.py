"""LFS uploads of the Hub protocol: signed upload URLs, and multipart parts staged on disk.

``huggingface_hub`` PUTs an LFS object to the URL the batch answer names *without* its
token (on the Hub that URL is a presigned S3 URL). loreg's URL is a capability instead:
``oid``, size, expiry and the token id, signed with HMAC-SHA256 keyed by the token's stored
hash. Only the server (and the token's holder, who could upload anyway) can make one;
revoking or expiring the token voids it. The upload then goes through the blob service as
``PUT /api/v1/blobs`` does, as the token's user.

Multipart: each part is streamed into ``LOREG_HOME/hub-uploads/<upload>/`` (temp name,
then renamed); the completion call streams the parts in order through the blob service,
which verifies the digest while writing the blob, and removes the folder. Parts live on the
API server that received them: behind several replicas, keep one client on one replica or
raise ``LOREG_HUB_MULTIPART_THRESHOLD_BYTES`` so every file takes the single PUT.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db.models import ApiToken, User
from loreg.digests import validate_digest
from loreg.errors import InvalidInput, Unauthenticated
from loreg.services.permissions import Principal

#: How long an upload URL from a batch answer stays valid.
UPLOAD_URL_SECONDS = 24 * 3600
#: Stale multipart folders (abandoned uploads) are removed after this long.
STAGING_MAX_AGE_SECONDS = 2 * UPLOAD_URL_SECONDS
MAX_PARTS = 10_000


def _invalid_url() -> Unauthenticated:
    return Unauthenticated(
        "this upload URL is invalid or has expired; ask for a new one (retry the upload)"
    )


@dataclass(frozen=True)
class UploadGrant:
    """What a signed upload URL allows: one object, of one size, until ``expires``."""

    oid: str
    size: int
    token_id: int
    expires: int
    chunk: int = 0  # the part size of a multipart upload; 0 for a single PUT

    @property
    def digest(self) -> str:
        return validate_digest(f"sha256:{self.oid}")

    @property
    def parts(self) -> int:
        return max(1, math.ceil(self.size / self.chunk)) if self.chunk else 1

    def _message(self, part: int | None) -> bytes:
        return f"{self.oid}:{self.size}:{self.token_id}:{self.expires}:{self.chunk}:{part}".encode()

    def signature(self, key: str, part: int | None = None) -> str:
        return hmac.new(key.encode(), self._message(part), hashlib.sha256).hexdigest()

    def query(self, key: str, part: int | None = None) -> str:
        return urlencode(
            {
                "size": self.size,
                "tid": self.token_id,
                "exp": self.expires,
                "chunk": self.chunk,
                "sig": self.signature(key, part),
            }
        )

    @property
    def staging_name(self) -> str:
        return f"{self.token_id}-{self.oid}-{self.expires}"


def grant(
    principal: Principal, oid: str, size: int, *, chunk: int = 0, now: float | None = None
) -> UploadGrant:
    if principal.token_id is None:
        raise Unauthenticated("uploads need a token")
    expires = int((now if now is not None else time.time()) + UPLOAD_URL_SECONDS)
    return UploadGrant(oid, size, principal.token_id, expires, chunk)


def signing_key(session: Session, token_id: int) -> str:
    """The key of a token's upload URLs (its stored hash, never sent anywhere)."""
    key = session.scalar(select(ApiToken.token_hash).where(ApiToken.id == token_id))
    if key is None:
        raise _invalid_url()
    return key


def check_grant(
    session: Session,
    oid: str,
    size: int,
    token_id: int,
    expires: int,
    chunk: int,
    sig: str,
    *,
    part: int | None = None,
) -> tuple[UploadGrant, Principal]:
    """The grant a signed URL carries and the principal it acts as; ``Unauthenticated``
    for a forged, altered or expired URL, or one whose token is no longer valid."""
    found = UploadGrant(oid, size, token_id, expires, chunk)
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.id == token_id)
    ).first()
    if row is None:
        raise _invalid_url()
    token, user = row
    if not hmac.compare_digest(found.signature(token.token_hash, part), sig):
        raise _invalid_url()
    now = datetime.now(UTC)
    if (
        expires < now.timestamp()
        or token.revoked_at is not None
        or user.disabled
        or (token.expires_at is not None and token.expires_at <= now)
    ):
        raise _invalid_url()
    if part is not None and not 1 <= part <= min(found.parts, MAX_PARTS):
        raise InvalidInput(f"part {part} is outside 1..{found.parts}")
    principal = Principal(
        user_id=user.id,
        username=user.name,
        namespace_id=user.namespace_id,
        is_admin=user.is_admin,
        scope=token.scope,
        token_id=token.id,
    )
    return found, principal


# --------------------------------------------------------------------------- multipart


def staging_dir(home: Path, upload: UploadGrant) -> Path:
    return home / "hub-uploads" / upload.staging_name


def part_length(upload: UploadGrant, part: int) -> int:
    """The exact size part ``part`` (1-based) must have."""
    start = (part - 1) * upload.chunk
    return max(0, min(upload.chunk, upload.size - start))


def write_part(home: Path, upload: UploadGrant, part: int, source: BinaryIO) -> int:
    """Stream one part to its staging file (temp name, then rename); returns its size."""
    folder = staging_dir(home, upload)
    folder.mkdir(parents=True, exist_ok=True)
    _sweep(home / "hub-uploads")
    want = part_length(upload, part)
    final = folder / f"part-{part:05d}"
    tmp = folder / f".part-{part:05d}.{time.monotonic_ns()}"
    written = 0
    try:
        with open(tmp, "wb") as out:
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > want:
                    raise InvalidInput(f"part {part} is larger than {want} bytes")
                out.write(chunk)
        if written != want:
            raise InvalidInput(f"part {part} has {written} bytes; expected {want}")
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return written


def part_etag(upload: UploadGrant, part: int) -> str:
    """What a part's ETag is: its position and size (the completion names parts by it)."""
    return f'"{upload.oid[:16]}-{part}-{part_length(upload, part)}"'


class _Parts(io.RawIOBase):
    """The staged parts, read back in order as one stream."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._paths = iter(paths)
        self._current: BinaryIO | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._current is None:
                path = next(self._paths, None)
                if path is None:
                    return 0
                self._current = open(path, "rb")  # noqa: SIM115 - closed when exhausted
            n = self._current.readinto(buffer)  # type: ignore[attr-defined]
            if n:
                return int(n)
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        super().close()


@contextlib.contextmanager
def assembled(home: Path, upload: UploadGrant, etags: list[str]) -> Iterator[BinaryIO]:
    """All parts in order as one stream, after checking the completion lists each part
    once with its ETag; the staging folder is removed afterwards, whatever happened."""
    folder = staging_dir(home, upload)
    try:
        if len(etags) != upload.parts:
            raise InvalidInput(
                f"the completion lists {len(etags)} part(s); the upload has {upload.parts}"
            )
        paths = []
        for part, etag in enumerate(etags, 1):
            path = folder / f"part-{part:05d}"
            if not path.exists():
                raise InvalidInput(f"part {part} was never uploaded; upload it, then complete")
            if etag.strip('"') != part_etag(upload, part).strip('"'):
                raise InvalidInput(f"part {part}: the ETag does not match the uploaded part")
            paths.append(path)
        reader = io.BufferedReader(_Parts(paths), buffer_size=1024 * 1024)
        try:
            yield reader
        finally:
            reader.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sweep(root: Path) -> None:
    """Remove the staging folders of uploads abandoned long ago."""
    cutoff = time.time() - STAGING_MAX_AGE_SECONDS
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
