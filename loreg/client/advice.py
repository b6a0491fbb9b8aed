"""What to do next when the registry cannot be reached or does not accept the token.

A client knows where its URL and token came from (``LOREG_URL`` / ``LOREG_TOKEN``, the
stored login under ``LOREG_HOME``, or the defaults); ``Origin.explain`` turns a bare
"connection refused" or "invalid token" into one line that names that source and the
command that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from loreg.client.errors import ApiError, ConnectionFailed, Unauthenticated

#: Where a URL or token came from.
FROM_ENV, FROM_STORED, FROM_DEFAULT, FROM_ARGUMENT = "env", "stored", "default", "argument"


@dataclass(frozen=True)
class Origin:
    """Where a client's URL and token came from, for messages that say what to do."""

    home: Path
    url_from: str = FROM_DEFAULT
    token_from: str | None = None  # None: no token is sent
    stored_url: str | None = None  # the URL of the stored login, when there is one

    @property
    def credentials(self) -> Path:
        from loreg.client.credentials import credentials_path

        return credentials_path(self.home).absolute()

    def _url_source(self) -> str:
        if self.url_from == FROM_ENV:
            return "from LOREG_URL"
        if self.url_from == FROM_STORED:
            return f"stored in {self.credentials}"
        if self.url_from == FROM_ARGUMENT:
            return "given on the command line"
        return f"the default: LOREG_URL is unset and {self.credentials} holds no login"

    def explain(self, exc: ApiError, url: str) -> ApiError:
        """``exc`` with a message that names the source and the fix; others unchanged."""
        if getattr(exc, "advised", False):  # explained once already
            return exc
        if isinstance(exc, ConnectionFailed) and isinstance(exc.__cause__, httpx.TransportError):
            message = (
                f"cannot reach the registry at {url} ({self._url_source()}): "
                f"{_reason(exc)}. Start one with `loreg serve` (it keeps its terminal), or "
                "point at yours with `loreg login URL` or LOREG_URL"
            )
        elif isinstance(exc, Unauthenticated):
            message = self._unauthenticated(exc, url)
        else:
            return exc
        out = type(exc)(message, code=exc.code, details=exc.details, status=exc.status)
        out.__cause__ = exc.__cause__
        setattr(out, "advised", True)  # noqa: B010 - a mark, not a field of the class
        return out

    def _unauthenticated(self, exc: ApiError, url: str) -> str:
        said = exc.message.rstrip(".")
        if self.token_from is None:
            if self.stored_url is not None:
                return (
                    f"not logged in to {url}: the login stored in {self.credentials} is for "
                    f"{self.stored_url}. Run `loreg login {url}` with a token for this "
                    "registry, or set LOREG_TOKEN"
                )
            return (
                f"not logged in: LOREG_TOKEN is unset and {self.credentials} holds no login "
                f"(LOREG_HOME={self.home}). Run `loreg login {url}` with a token, or start "
                "`loreg serve` with this LOREG_HOME (its first start stores an admin token "
                "there)"
            )
        if self.token_from == FROM_ENV:
            return (
                f"the registry at {url} does not accept the token in LOREG_TOKEN ({said}). "
                "Set LOREG_TOKEN to a valid token (`loreg token create NAME` makes one), or "
                "unset it to use the stored login"
            )
        if self.token_from == FROM_STORED:
            return (
                f"the registry at {url} does not accept the token stored in "
                f"{self.credentials} ({said}). Run `loreg login {url}` with a valid token "
                "(`loreg token create NAME` makes one), or set LOREG_TOKEN"
            )
        return (
            f"the registry at {url} does not accept this token ({said}). Check it, or make "
            "a new one with `loreg token create NAME`"
        )


def _reason(exc: ApiError) -> str:
    """The transport's reason, short: "connection refused", "timed out"..."""
    cause = exc.__cause__
    text = str(cause) if cause is not None else exc.message
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    if text.strip():
        return text.strip()
    return type(cause).__name__ if cause is not None else "unreachable"
