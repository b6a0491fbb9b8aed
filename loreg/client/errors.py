"""Typed exceptions for API errors, so callers switch on a class or a code, never on text.

The server answers every error as ``{"error": {"code", "message", "details"}}`` with a status
(docs/design.md §8). ``ApiError.from_response`` picks the class by status; ``code`` keeps the
server's precise string (``blob_not_found``, ``digest_mismatch`` ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import httpx

if TYPE_CHECKING:
    from loreg.client.models import Job


class ApiError(Exception):
    """An error answered by (or on the way to) the registry."""

    status_code: ClassVar[int] = 0
    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details
        self.status = status if status is not None else self.status_code

    def to_dict(self) -> dict[str, Any]:
        """The error object as the API shapes it (what ``--json`` prints)."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Build the typed error for a non-2xx response, whatever its body looks like."""
        status = response.status_code
        code: str | None = None
        message = ""
        details: Any = None
        try:
            body = response.json()
        except Exception:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            code = str(err.get("code")) if err.get("code") is not None else None
            message = str(err.get("message") or "")
            details = err.get("details")
        elif isinstance(body, dict) and "detail" in body:  # a bare FastAPI/Starlette answer
            message = str(body["detail"])
        if not message:
            text = response.text[:500] if response.content else ""
            message = f"HTTP {status} from {response.request.method} {response.request.url.path}"
            if text:
                message += f": {text}"
        klass = _BY_STATUS.get(status)
        if klass is None:
            klass = ServerError if status >= 500 else ApiError
        return klass(message, code=code, details=details, status=status)


class InvalidInput(ApiError):
    """400: the request was malformed."""

    status_code = 400
    default_code = "invalid_input"


class Unauthenticated(ApiError):
    """401: no token, or a token the registry does not accept."""

    status_code = 401
    default_code = "unauthenticated"


class PermissionDenied(ApiError):
    """403: authenticated, but not allowed."""

    status_code = 403
    default_code = "permission_denied"


class NotFound(ApiError):
    """404: no such thing (or not visible to this token)."""

    status_code = 404
    default_code = "not_found"


class Conflict(ApiError):
    """409: clashes with the current state."""

    status_code = 409
    default_code = "conflict"


class TooLarge(ApiError):
    """413: a size limit was exceeded."""

    status_code = 413
    default_code = "too_large"


class Incompatible(ApiError):
    """422: the adapter does not fit its base, or is otherwise invalid."""

    status_code = 422
    default_code = "incompatible"


class ServerError(ApiError):
    """5xx: the registry failed; retried by the transfer engine."""

    status_code = 500
    default_code = "server_error"


class ConnectionFailed(ApiError):
    """The registry (or the store it redirected to) could not be reached."""

    status_code = 0
    default_code = "connection_failed"


class IntegrityError(ApiError):
    """Downloaded bytes do not hash to the digest the manifest names."""

    status_code = 0
    default_code = "digest_mismatch"


class Offline(ApiError):
    """``LOREG_OFFLINE`` is set and this needs the registry."""

    status_code = 0
    default_code = "offline"


class NotCached(Offline):
    """Offline, and the version asked for was never pulled into the local cache."""

    default_code = "not_cached"


class JobFailed(ApiError):
    """A job ended ``failed`` or ``cancelled``; ``job`` is the job (``details``: its
    document, as the API sent it)."""

    status_code = 0
    default_code = "job_failed"

    def __init__(self, message: str, *, job: Job | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.job = job


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: Incompatible,
}

__all__ = [
    "ApiError",
    "Conflict",
    "ConnectionFailed",
    "Incompatible",
    "IntegrityError",
    "InvalidInput",
    "JobFailed",
    "NotCached",
    "NotFound",
    "Offline",
    "PermissionDenied",
    "ServerError",
    "TooLarge",
    "Unauthenticated",
]
