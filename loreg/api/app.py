"""The application factory: one engine, sessionmaker and store per app; middleware; routes.

Routers: ``loreg.api.routers.health`` is mounted at the root (``/healthz``, ``/readyz``);
those in :data:`API_ROUTERS` under ``/api/v1``, in that order; the web pages under
``/ui``; the Hugging Face Hub protocol last. A new resource module is added to the list.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loreg.api.errors import install_error_handlers, internal_error_response
from loreg.api.fastpath import ReadFastPath
from loreg.api.limits import BodyLimitMiddleware
from loreg.api.metrics import install_metrics
from loreg.api.openapi import TAGS, document_errors, install_docs, operation_id
from loreg.api.routers import (
    accounts,
    adapters,
    audit,
    bases,
    blobs,
    health,
    jobs,
    tags,
    uploads,
    versions,
    webhooks,
)
from loreg.api.usage import TokenUses
from loreg.background.gc import sweep_leftover_uploads
from loreg.config import Settings
from loreg.db.session import create_engine_for, make_sessionmaker
from loreg.logging import request_id_var
from loreg.storage import BlobStore, open_store

log = logging.getLogger("loreg.api")

API_PREFIX = "/api/v1"
API_DESCRIPTION = """\
Every call is under `/api/v1`. Send a token as `Authorization: Bearer lrg_...` (create one
with `loreg token create NAME` or `POST /api/v1/tokens`). Reads of public adapters need none.

Every error answers `{"error": {"code", "message", "details"}}`; switch on `code`. Lists are
paged: pass a page's `next_cursor` back as `cursor`.

A push is three calls: `POST /uploads` (which digests are missing), `PUT /blobs/{digest}`
for each missing file, `POST /adapters/{namespace}/{name}/versions` with the file list.
"""
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            try:
                candidate = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return candidate if _REQUEST_ID_RE.fullmatch(candidate) else None
    return None


class RequestContextMiddleware:
    """Gives every request an id and turns any unhandled exception into a logged 500.

    The id is the client's ``X-Request-ID`` when it is sane (``[A-Za-z0-9._:-]``, at most
    64 characters), else a new one; it is echoed on every response, stored on
    ``request.state.request_id`` and in ``request_id_var``. Unhandled exceptions are logged
    with their stack trace and the request id; the client gets the generic error shape.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error in %s %s (request id %s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if started:
                raise
            await internal_error_response(request_id)(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


#: The routers mounted under ``/api/v1``, in order (a path matches the first router that
#: declares it).
API_ROUTERS: tuple[APIRouter, ...] = (
    accounts.router,
    adapters.router,
    audit.router,
    bases.router,
    blobs.router,
    jobs.router,
    tags.router,
    uploads.router,
    versions.router,
    webhooks.router,
)


def create_app(
    settings: Settings | None = None,
    *,
    store: BlobStore | None = None,
    engine: Engine | None = None,
    sweep_uploads: bool = True,
) -> FastAPI:
    """The loreg API. Builds what it is not given (engine, store) once, from ``settings``.

    An engine it built is disposed of at shutdown; one passed in belongs to the caller.
    ``sweep_uploads``: remove interrupted uploads' temp files at start-up (``loreg serve
    --workers N`` does it once, before starting the N processes).
    """
    settings = settings if settings is not None else Settings()
    owns_engine = engine is None
    engine = engine if engine is not None else create_engine_for(settings.effective_database_url)
    store = store if store is not None else open_store(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if sweep_uploads:
            remove_upload_leftovers(store)
        yield
        app.state.token_uses.stop()
        if owns_engine:
            engine.dispose()

    app = FastAPI(
        title="loreg",
        summary="A registry for LoRA adapters.",
        description=API_DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        openapi_tags=TAGS,
        generate_unique_id_function=operation_id,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.store = store
    app.state.token_uses = TokenUses(app.state.sessionmaker)

    install_error_handlers(app)
    app.add_middleware(ReadFastPath, api=app)  # innermost: the others see its requests too
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(RequestContextMiddleware)
    install_metrics(app)

    app.include_router(health.router)
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    from loreg.ui.routes import router as ui_router

    app.include_router(ui_router, prefix="/ui")
    install_docs(app)
    document_errors(app, [health.router, *API_ROUTERS])
    from loreg.api.hub import router as hub_router

    app.include_router(hub_router)  # last: its /{ns}/{name}/... paths must not shadow others
    return app


def remove_upload_leftovers(store: BlobStore) -> None:
    """At start-up: delete the temp files of uploads that a crashed process left behind
    (only those no live process is writing; see ``loreg.storage.local``)."""
    try:
        _aborted, removed = sweep_leftover_uploads(store)
    except Exception as exc:  # the store is down: GC retries later, serving goes on
        log.warning("could not remove leftover upload temp files: %s", exc)
        return
    if removed:
        log.warning(
            "removed %d upload temp file(s) left by an interrupted process (%d bytes)",
            len(removed),
            sum(t["size"] for t in removed),
        )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("loreg")
    except Exception:
        return "0.0.0"
