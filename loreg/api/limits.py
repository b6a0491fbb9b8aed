"""Request body limits, enforced before authentication and before any parsing.

An ASGI middleware, so nothing reads a byte of a body before its size is known to be
acceptable:

- a ``Content-Length`` over the route's limit is answered ``413`` at once, without reading
  the body (``Connection: close``, so the rest is never read either);
- a body without one (chunked) is counted as it streams; the moment it passes the limit the
  application sees the client as gone, stops, and the caller gets the ``413``.

Limits: every body gets ``LOREG_MAX_JSON_BYTES`` (JSON and forms) except the routes in
:data:`LARGE_BODY_ROUTES`, which get their own limit **when the request carries a
credential**: a token, or for the Hub protocol's signed upload URLs a ``sig`` query
parameter (the route checks that signature before it reads a byte of the body). Anonymous
callers can never upload, so they never get more than the JSON limit. A new route that takes
large bodies (another upload protocol) adds a :class:`BodyRule` there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loreg.api.errors import error_response
from loreg.config import Settings
from loreg.errors import InvalidInput, TooLarge


@dataclass(frozen=True)
class BodyRule:
    """Requests ``method`` to a path matching ``pattern`` may carry ``limit(settings)``
    bytes when they carry a token (or, with ``signed``, a signed URL's ``sig``)."""

    method: str
    pattern: re.Pattern[str]
    limit: Callable[[Settings], int]
    signed: bool = False


LARGE_BODY_ROUTES: list[BodyRule] = [
    BodyRule("PUT", re.compile(r"/api/v1/blobs/[^/]+"), lambda s: s.max_blob_bytes),
    BodyRule("POST", re.compile(r"/api/v1/bases/?"), lambda s: s.max_base_manifest_bytes),
    # The Hugging Face Hub protocol: NDJSON commits, and LFS uploads to signed URLs.
    BodyRule(
        "POST", re.compile(r"/api/models/[^/]+/[^/]+/commit/.+"), lambda s: s.hub_max_commit_bytes
    ),
    BodyRule("PUT", re.compile(r"/api/lfs/objects/[^/]+"), lambda s: s.max_blob_bytes, signed=True),
    BodyRule(
        "PUT",
        re.compile(r"/api/lfs/objects/[^/]+/parts/\d+"),
        lambda s: s.max_blob_bytes,
        signed=True,
    ),
]


def _signed(scope: Scope) -> bool:
    query = scope.get("query_string", b"")
    return any(pair.startswith(b"sig=") for pair in query.split(b"&"))


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", ()) if key.lower() == name]


class BodyLimitMiddleware:
    """Refuses request bodies over their route's limit (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, *, settings: Settings, rules: list[BodyRule] | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.rules = LARGE_BODY_ROUTES if rules is None else rules

    def limit_for(self, scope: Scope) -> int:
        token = bool(_header(scope, b"authorization"))
        signed = _signed(scope)
        if token or signed:
            method, path = scope.get("method", ""), scope.get("path", "")
            root = scope.get("root_path", "")
            if root and path.startswith(root):  # served under a prefix (behind a proxy)
                path = path[len(root) :]
            for rule in self.rules:
                if (
                    rule.method == method
                    and rule.pattern.fullmatch(path)
                    and (token or (signed and rule.signed))
                ):
                    return rule.limit(self.settings)
        return self.settings.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        lengths = _header(scope, b"content-length")
        if lengths:
            value = lengths[0].strip()
            if len(lengths) > 1 or not value.isdigit() or len(value) > 19:
                await _refuse(scope, receive, send, InvalidInput("invalid Content-Length header"))
                return
            if int(value) > limit:
                await _refuse(scope, receive, send, _too_large(limit, int(value)))
                return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True  # the app sees a client that went away, and stops
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # whatever the app answers to the "disconnect", the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await _refuse(scope, receive, send, _too_large(limit, None))


def _too_large(limit: int, length: int | None) -> TooLarge:
    details: dict[str, int] = {"limit": limit}
    if length is not None:
        details["content_length"] = length
    return TooLarge(
        f"request body is larger than the limit of {limit} bytes for this request", details=details
    )


async def _refuse(
    scope: Scope, receive: Receive, send: Send, error: TooLarge | InvalidInput
) -> None:
    status = 413 if isinstance(error, TooLarge) else 400
    response = error_response(
        status, error.code, error.message, error.details, headers={"Connection": "close"}
    )
    await response(scope, receive, send)
