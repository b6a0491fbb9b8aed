"""``LOREG_HOME/credentials.json``: where ``loreg serve`` and ``loreg login`` leave the token.

``{"url": ..., "token": ...}``, mode 0600, written to a temp file and renamed so a reader
never sees half a file. ``LOREG_URL`` / ``LOREG_TOKEN`` (through ``Settings``) win over it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

FILENAME = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    url: str | None
    token: str | None


def credentials_path(home: Path) -> Path:
    return home / FILENAME


def load_credentials(home: Path) -> Credentials:
    """The stored login, or empty credentials when there is none (or it is unreadable)."""
    try:
        data = json.loads(credentials_path(home).read_text())
    except (OSError, ValueError):
        return Credentials(None, None)
    if not isinstance(data, dict):
        return Credentials(None, None)
    url, token = data.get("url"), data.get("token")
    return Credentials(
        url if isinstance(url, str) and url else None,
        token if isinstance(token, str) and token else None,
    )


def save_credentials(home: Path, url: str, token: str | None) -> Path:
    """Write the login atomically with mode 0600 (the token is a secret)."""
    home.mkdir(parents=True, exist_ok=True)
    path = credentials_path(home)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".credentials.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url, "token": token}, f)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path
