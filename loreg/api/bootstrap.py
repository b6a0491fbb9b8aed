"""First start: an empty registry gets an admin user and a token the local CLI can find."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from loreg.config import Settings
from loreg.services import accounts

log = logging.getLogger("loreg.api")

CREDENTIALS_FILE = "credentials.json"


def credentials_path(settings: Settings) -> Path:
    return settings.home / CREDENTIALS_FILE


def ensure_admin(
    settings: Settings, maker: sessionmaker[Session], *, url: str | None = None
) -> str | None:
    """Create user ``admin`` and an admin token when the database has no users.

    Writes ``{"url": ..., "token": ...}`` to ``$LOREG_HOME/credentials.json`` (mode 0600,
    written to a temp file and renamed) and returns the token; returns ``None`` when users
    exist already (nothing is written), including when another replica won the race.
    """
    with maker() as session:
        created = accounts.bootstrap_admin(session)
        if created is None:
            return None
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            log.info("another process created the first admin; nothing to do")
            return None
    _user, token = created
    write_credentials(credentials_path(settings), url or settings.url, token)
    log.warning(
        "created the first admin user 'admin'; its token is in %s", credentials_path(settings)
    )
    return token


def write_credentials(path: Path, url: str, token: str) -> None:
    """Atomically write a credentials file readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"url": url, "token": token}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
