"""The hottest reads, answered in one step (one trip through the thread pool, or none).

CI pipelines and serving fleets mostly resolve references, show versions and search.
Through the framework, each such request costs four hops through the thread pool (the
caller's token, the route, response validation, closing the session) and the generic
dependency and routing machinery, several times the work of the answer itself. This
ASGI middleware, the innermost one (request ids, body limits and metrics still see every
request), answers these requests directly:

- ``GET /api/v1/adapters/{namespace}/{name}/versions/{ref}`` (``include_deleted``),
- ``GET /api/v1/resolve?ref=...``,
- ``GET /api/v1/adapters/{namespace}/{name}/versions`` (``cursor``, ``limit``,
  ``include_deleted``),
- ``GET /api/v1/adapters`` (search: every filter, ``cursor``, ``limit``),

each in one worker thread (on SQLite, on the event loop: see ``ReadFastPath._read``):
authenticate the token in the request's session (a read; its
last use is noted for ``loreg.api.usage``), call the same service (``loreg.services.reads``)
and build the same response model as the route, serialise it, close the session. The
routes in ``loreg.api.routers`` stay the documented reference: any request this module is
not sure to answer exactly as they would (an unknown or malformed parameter, another
method) goes to them, so validation errors keep the framework's wording. Errors raised
here go through the app's own exception handlers (``loreg.api.errors``).

Version documents carry a strong ``ETag`` (a hash of the body) and ``Cache-Control:
private, no-cache``: a client may keep them and revalidate with ``If-None-Match`` (answered
``304`` with no body, after the same authorisation as a full answer); they are never
``immutable``, because tags, the validation state and deletion change what a version
number answers (see docs/scaling.md, "Caching").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loreg.api.deps import _bearer_token, authenticate_in
from loreg.api.etags import etag_of, none_match
from loreg.api.routers._views import adapter_view_out, version_view_out
from loreg.api.schemas.versions import AdapterList, VersionList
from loreg.services import adapters as adapter_svc
from loreg.services import reads
from loreg.services.pagination import MAX_LIMIT

API = "/api/v1"
_SEGMENT = r"([^/]+)"
_VERSION = re.compile(rf"{API}/adapters/{_SEGMENT}/{_SEGMENT}/versions/{_SEGMENT}")
_VERSIONS = re.compile(rf"{API}/adapters/{_SEGMENT}/{_SEGMENT}/versions")
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_INT_MAX = 2**31 - 1

#: PostgreSQL reads answered at once. Each holds a worker thread and a pooled connection;
#: more wait on the event loop, not in threads fighting for the interpreter or for a pool
#: that would open and close connections past its size (5). Two overlap the database's
#: answer to one with the other's Python.
MAX_CONCURRENT_READS = 2

#: ``Cache-Control`` of version documents: any cache may keep them, only privately, and
#: must revalidate (with ``If-None-Match``) before every use.
VERSION_CACHE_CONTROL = "private, no-cache"


class NotHere(Exception):
    """The request is not one this module answers: the framework's route takes it."""


def _flag(value: str) -> bool:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise NotHere


def _int(value: str, low: int, high: int) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise NotHere
    number = int(value)
    if not low <= number <= high:
        raise NotHere
    return number


def _text(value: str, max_length: int, min_length: int = 0) -> str:
    if not min_length <= len(value) <= max_length:
        raise NotHere
    return value


def _query(scope: Scope, allowed: dict[str, bool]) -> dict[str, list[str]]:
    """The query parameters, when all are ``allowed`` (name -> may repeat)."""
    raw = scope.get("query_string", b"")
    out: dict[str, list[str]] = {}
    if raw:
        try:
            pairs = parse_qsl(
                raw.decode("latin-1"),
                keep_blank_values=True,
                strict_parsing=True,
                encoding="utf-8",
                errors="strict",
            )
        except (ValueError, UnicodeDecodeError):
            raise NotHere from None
        for key, value in pairs:
            if key not in allowed or (key in out and not allowed[key]):
                raise NotHere
            out.setdefault(key, []).append(value)
    return out


def _one(params: dict[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0] if values else None


# A plan: (route name for metrics, work to run in a worker thread given session + actor,
# whether the answer is a version document).
Work = Callable[[Any, Any], BaseModel]


def _plan(scope: Scope) -> tuple[str, Work, bool]:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path == f"{API}/resolve":
        params = _query(scope, {"ref": False})
        ref = _text(_one(params, "ref") or "", 400, 1)
        return "resolve", lambda s, a: version_view_out(reads.resolve(s, a, ref)), True
    if path == f"{API}/adapters":
        return "search_adapters", _search_work(scope), False
    m = _VERSION.fullmatch(path)
    if m:
        ns, name, ref = m.groups()
        params = _query(scope, {"include_deleted": False})
        deleted = _flag(_one(params, "include_deleted") or "false")
        return (
            "show_version",
            lambda s, a: version_view_out(
                reads.show_version(s, a, ns, name, ref, include_deleted=deleted)
            ),
            True,
        )
    m = _VERSIONS.fullmatch(path)
    if m:
        ns, name = m.groups()
        params = _query(scope, {"cursor": False, "limit": False, "include_deleted": False})
        cursor = _one(params, "cursor")
        if cursor is not None:
            _text(cursor, 1000)
        limit = _int(_one(params, "limit") or "50", 1, MAX_LIMIT)
        deleted = _flag(_one(params, "include_deleted") or "false")

        def versions(s: Any, a: Any) -> BaseModel:
            page = reads.list_versions(
                s, a, ns, name, cursor=cursor, limit=limit, include_deleted=deleted
            )
            return VersionList(
                versions=[version_view_out(v) for v in page.items], next_cursor=page.next_cursor
            )

        return "list_versions", versions, False
    raise NotHere


def _search_work(scope: Scope) -> Work:
    params = _query(
        scope,
        {
            "namespace": False,
            "base": False,
            "target": False,
            "rank_min": False,
            "rank_max": False,
            "label": True,
            "text": False,
            "cursor": False,
            "limit": False,
        },
    )
    strings = {}
    for key, max_length in (
        ("namespace", 96),
        ("base", 256),
        ("target", 512),
        ("text", 256),
        ("cursor", 1000),
    ):
        value = _one(params, key)
        strings[key] = None if value is None else _text(value, max_length)
    ranks = {
        key: None if (v := _one(params, key)) is None else _int(v, 0, _INT_MAX)
        for key in ("rank_min", "rank_max")
    }
    labels = params.get("label", [])
    if len(labels) > 64:
        raise NotHere
    limit = _int(_one(params, "limit") or "50", 1, MAX_LIMIT)
    filters = adapter_svc.SearchFilters(
        namespace=strings["namespace"],
        base=strings["base"],
        target=strings["target"],
        rank_min=ranks["rank_min"],
        rank_max=ranks["rank_max"],
        labels=labels,
        text=strings["text"],
    )

    def search(s: Any, a: Any) -> BaseModel:
        page = adapter_svc.search_views(s, a, filters, cursor=strings["cursor"], limit=limit)
        return AdapterList(
            adapters=[adapter_view_out(v) for v in page.items], next_cursor=page.next_cursor
        )

    return search


def _collect(routes: Any, found: dict[str, APIRoute]) -> None:
    """API routes by name, first one wins (the ``/api/v1`` routers come before the rest),
    looking into included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            found.setdefault(route.name, route)
        elif (inner := getattr(route, "original_router", None)) is not None:
            _collect(inner.routes, found)


class ReadFastPath:
    """The middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._routes: dict[str, APIRoute] | None = None
        self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT_READS)

    async def _read(self, request: Request, work: Work) -> bytes:
        """The answer's body. SQLite answers in-process, in a fraction of a millisecond of
        Python: on the event loop itself, as a worker thread would take longer to hand it
        over than to compute it (and threads would only take turns at the interpreter)."""
        if self.api.state.engine.dialect.name == "sqlite":
            return self._answer(request, work)
        return await anyio.to_thread.run_sync(self._answer, request, work, limiter=self._limiter)

    def _route(self, name: str) -> APIRoute | None:
        """The framework's route of that name (metrics label requests by its template)."""
        if self._routes is None:
            found: dict[str, APIRoute] = {}
            _collect(self.api.routes, found)
            self._routes = found
        return self._routes.get(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        try:
            name, work, is_version = _plan(scope)
        except NotHere:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        route = self._route(name)
        if route is not None:
            scope["route"] = route
        try:
            body = await self._read(request, work)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            await response(scope, receive, send)
            return
        headers = {}
        status = 200
        if is_version:
            tag = etag_of(body)
            headers = {"ETag": tag, "Cache-Control": VERSION_CACHE_CONTROL, "Vary": "Authorization"}
            if none_match(request.headers.get("if-none-match"), tag):
                status, body = 304, b""
        response = Response(
            body,
            status_code=status,
            headers=headers,
            media_type=None if status == 304 else "application/json",
        )
        await response(scope, receive, send)

    def _answer(self, request: Request, work: Work) -> bytes:
        """In one step (see ``_read``): the caller, the answer, the connection handed back. One
        read transaction on a bare connection (the services' reads take either); ended by
        the close, which rolls it back."""
        engine: Engine = self.api.state.engine
        with engine.connect() as conn:
            token = _bearer_token(request)
            actor = None if token is None else authenticate_in(request, conn, token)
            model = work(conn, actor)
            return model.__pydantic_serializer__.to_json(model)

    def _handler(self, exc: Exception) -> Any:
        handlers = self.api.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None
