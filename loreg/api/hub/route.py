"""Errors the way the Hub answers them, so ``huggingface_hub`` raises the right exception and
prints loreg's message.

The status of a domain error is still ``loreg.api.errors.status_for`` (the one mapping);
only the body differs: ``{"error": "<message>"}``, plus ``X-Error-Code`` where the client
switches on it (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``). A repo that does
not exist and one the caller may not read get the same answer: 401 without a token, 404
with one, as the Hub does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from loreg.api.errors import status_for
from loreg.errors import LoregError, Unauthenticated
from loreg.services.hub import EntryNotFound, RepoNotFound, RevisionNotFound

_CODES: dict[type, str] = {
    RepoNotFound: "RepoNotFound",
    RevisionNotFound: "RevisionNotFound",
    EntryNotFound: "EntryNotFound",
}


def hub_error(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The Hub's error body; ``extra`` keys sit beside ``error`` (``errors``, ``url``)."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _domain_error(request: Request, exc: LoregError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    code = _CODES.get(type(exc))
    if code is not None:
        headers["X-Error-Code"] = code
    if isinstance(exc, RepoNotFound):
        headers["X-Error-Message"] = exc.message
        if "authorization" not in request.headers:
            status = 401
    if isinstance(exc, EntryNotFound) and exc.commit:
        headers["X-Repo-Commit"] = exc.commit
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
        if "authorization" in request.headers:
            # what the client takes as "bad token", not as "repository not found"
            headers["X-Error-Message"] = "Invalid credentials in Authorization header"
    return hub_error(status, exc.message, headers)


class HubRoute(APIRoute):
    """An ``APIRoute`` whose errors take the Hub's shape (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except LoregError as exc:
                return _domain_error(request, exc)
            except RequestValidationError as exc:
                first: dict[str, Any] = next(iter(exc.errors()), {})
                where = ".".join(str(p) for p in first.get("loc", ())) or "request"
                return hub_error(400, f"invalid request: {where}: {first.get('msg', 'invalid')}")
            except StarletteHTTPException as exc:
                message = exc.detail if isinstance(exc.detail, str) else "request failed"
                return hub_error(exc.status_code, message, dict(exc.headers or {}))

        return run
