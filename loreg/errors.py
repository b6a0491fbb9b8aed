"""The typed error hierarchy every layer raises.

Services, formats, merge and storage raise these; the API maps each class to an HTTP
status in exactly one place (``loreg.api.errors``) and the CLI maps them to exit codes.
``code`` is the stable machine-readable string that clients switch on.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LoregError(Exception):
    """Base of every error loreg raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidInput(LoregError):
    """The caller sent something malformed (HTTP 400)."""

    code = "invalid_input"


class InvalidDigest(InvalidInput):
    """A digest that is not ``sha256:`` followed by 64 lower-case hex digits (HTTP 400)."""

    code = "invalid_digest"


class Unauthenticated(LoregError):
    """No, or no valid, credentials (HTTP 401)."""

    code = "unauthenticated"


class PermissionDenied(LoregError):
    """Authenticated but not allowed (HTTP 403)."""

    code = "permission_denied"


class NotFound(LoregError):
    """The thing does not exist, or the caller may not know it exists (HTTP 404)."""

    code = "not_found"


class Conflict(LoregError):
    """The request clashes with the current state (HTTP 409)."""

    code = "conflict"


class TooLarge(LoregError):
    """A size limit or quota was exceeded (HTTP 413)."""

    code = "too_large"


class Incompatible(LoregError):
    """An adapter does not fit its base model, or is otherwise invalid (HTTP 422)."""

    code = "incompatible"


class Unavailable(LoregError):
    """A backing service (database, blob store) cannot be reached (HTTP 503)."""

    code = "unavailable"
