"""The API's own documentation: operation ids, tags, error responses, and ``/docs``.

- Operation ids are the route functions' names (``push_version``, ``submit_job``): they
  become SDK method names, so they carry no path and no method.
- Every operation documents the error statuses it can answer, no others: each route declares
  its domain errors with ``errors(403, 404, ...)``; ``document_errors`` adds what follows from
  its signature (400 when it takes parameters or a body, 401 when it reads a token, 503 when
  it needs the database or the blob store).
- ``/docs`` is Swagger UI served from the ``swagger-ui-bundle-v2`` package's files under
  ``/docs/assets``: an air-gapped cluster gets a working page with no CDN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from loreg.api.deps import get_optional_user, get_session, get_sessionmaker, get_store
from loreg.api.examples import add_examples
from loreg.api.schemas.common import ErrorResponse

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input: a malformed parameter, body, name or cursor",
    401: "Missing, invalid, expired or revoked token",
    403: "Authenticated, but the token's scope or the caller's role does not allow this",
    404: "Not found, or not visible to the caller (the same answer for both)",
    409: "Conflicts with the current state",
    413: "Too large: a size limit or the namespace's quota",
    416: "Range not satisfiable",
    422: "Incompatible: the adapter does not fit the base model (the report is in details)",
    503: "The database or the blob store is unavailable: retry later",
}

TAGS: list[dict[str, str]] = [
    {
        "name": "accounts",
        "description": "Users, organisations and their members, API tokens, "
        "and `whoami`. Tokens are sent as `Authorization: Bearer lrg_...`; scopes are read, "
        "write and admin.",
    },
    {
        "name": "blobs",
        "description": "Content-addressed file storage. A push asks "
        "`POST /uploads` which digests are missing, then `PUT /blobs/sha256:<hex>` streams "
        "each one (verified against its digest). Downloads may answer 307 to the store.",
    },
    {
        "name": "versions",
        "description": "Push a version from uploaded blobs, list, show, "
        "delete and restore versions, and resolve any reference (`ns/name`, `:tag`, `@N`, "
        "`@sha256:<hex>`).",
    },
    {
        "name": "adapters",
        "description": "Search adapters; show one; change its visibility or description.",
    },
    {
        "name": "tags",
        "description": "Movable names for versions. `latest` follows the "
        "newest version unless set by hand; protected tags need a namespace admin.",
    },
    {
        "name": "bases",
        "description": "Base models: a manifest (tensor names, dtypes, "
        "shapes) and a fingerprint; optionally their files, so workers can merge into them.",
    },
    {
        "name": "jobs",
        "description": "Work done by the workers: validate, merge, export, "
        "combine. Submit, poll, cancel, then download the outputs from `/blobs`.",
    },
    {
        "name": "webhooks",
        "description": "Signed HTTP POSTs to your URL when versions, tags "
        "or jobs change (namespace admins).",
    },
    {"name": "audit", "description": "Who changed what, when (site administrators)."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the domain errors it can answer, in the error shape."""
    return {s: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


def operation_id(route: APIRoute) -> str:
    return route.name


def _walk(dependant: Dependant) -> tuple[set[Any], bool]:
    """(every dependency callable, whether any level takes parameters or a body)."""
    calls: set[Any] = set()
    takes_input = bool(
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
    )
    for dep in dependant.dependencies:
        calls.add(dep.call)
        sub_calls, sub_input = _walk(dep)
        calls |= sub_calls
        takes_input = takes_input or sub_input
    return calls, takes_input


def implied_errors(route: APIRoute) -> set[int]:
    """Errors a route can answer because of what it takes and what it depends on."""
    calls, takes_input = _walk(route.dependant)
    statuses = set()
    if takes_input or route.openapi_extra:
        statuses.add(400)
    if get_optional_user in calls:
        statuses.add(401)
    if calls & {get_session, get_sessionmaker, get_store}:
        statuses.add(503)
    return statuses


def document_errors(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Give every operation of ``routers`` its implied error responses, and drop FastAPI's
    generic 422 "Validation Error" (loreg answers invalid input with a 400 in the error
    shape; a 422 means incompatible and is declared where it can happen)."""
    implied: dict[str, set[int]] = {}
    declared: dict[str, set[str]] = {}
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                implied[route.name] = implied_errors(route)
                declared[route.name] = {str(k) for k in route.responses}
    generate = app.openapi
    done: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        if done and done[0] is schema:
            return schema
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for item in schema.get("paths", {}).values():
            for op in item.values():
                op_id = op.get("operationId")
                if op_id not in implied:
                    continue
                responses = op.setdefault("responses", {})
                if "422" in responses and "422" not in declared[op_id]:
                    del responses["422"]
                for status in sorted(implied[op_id]):
                    responses.setdefault(
                        str(status),
                        {
                            "description": ERROR_DESCRIPTIONS[status],
                            "content": {"application/json": {"schema": ref}},
                        },
                    )
                op["responses"] = dict(sorted(responses.items()))
        add_examples(schema)
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        done[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    """``/docs`` from local assets, ``/`` to the web page."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            # no badge fetched from an outside validator service
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)
