"""Accounts and repo writes: ``whoami-v2``, ``repos/create``, ``validate-yaml``, ``preupload``
and the NDJSON ``commit`` that becomes a version through ``adapters.push_version``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from loreg.api.deps import CurrentUser, OptionalUser, SessionDep, SettingsDep, StoreDep
from loreg.api.hub.route import HubRoute, hub_error
from loreg.errors import InvalidInput, TooLarge
from loreg.services import accounts, hub
from loreg.services.adapters import PushOutcome
from loreg.services.permissions import require_scope

router = APIRouter(route_class=HubRoute)

_ROLE_BY_SCOPE = {"read": "read", "write": "write", "admin": "write"}


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/api/whoami-v2")
def whoami(session: SessionDep, actor: CurrentUser) -> dict[str, Any]:
    orgs = accounts.memberships_of(session, actor)
    return {
        "type": "user",
        "id": str(actor.user_id),
        "name": actor.username,
        "fullname": actor.username,
        "email": None,
        "emailVerified": False,
        "isPro": False,
        "canPay": False,
        "orgs": [{"type": "org", "name": n, "fullname": n, "roleInOrg": r} for n, r in orgs],
        "auth": {
            "type": "access_token",
            "accessToken": {
                "displayName": f"loreg token {actor.token_id}",
                "role": _ROLE_BY_SCOPE.get(actor.scope, "read"),
            },
        },
    }


class _YamlBody(BaseModel):
    content: str = Field(max_length=hub.MAX_CARD_BYTES)
    repoType: str | None = Field(default=None, max_length=32)


@router.post("/api/validate-yaml")
def validate_yaml(body: _YamlBody) -> JSONResponse:
    try:
        hub.front_matter(body.content)
    except InvalidInput as exc:
        return hub_error(
            400, "Invalid metadata in README.md", errors=[{"message": exc.message}], warnings=[]
        )
    return JSONResponse({"errors": [], "warnings": []})


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"'{key}' must be a string")
    return value


@router.post("/api/repos/create")
async def create_repo(request: Request, session: SessionDep, actor: OptionalUser) -> JSONResponse:
    principal = require_scope(actor, "write")
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput("the body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    name, org = _text(body, "name"), _text(body, "organization")
    if not name:
        raise InvalidInput("'name' is required")
    if "/" in name and org is None:
        org, _, name = name.partition("/")
    repo_type = _text(body, "type") or "model"
    if repo_type != "model":
        raise InvalidInput("loreg hosts model repositories (adapters) only")
    visibility = _text(body, "visibility")
    private = body.get("private")
    if visibility is not None:
        private = visibility != "public"
    if private is not None and not isinstance(private, bool):
        raise InvalidInput("'private' must be true or false")
    namespace = org or principal.username

    def create() -> tuple[str, bool]:
        adapter, created = hub.create_repo(session, principal, namespace, name, private=private)
        session.commit()
        return f"{adapter.namespace.name}/{adapter.name}", created

    repo_id, created = await run_in_threadpool(create)
    url = f"{base_url(request)}/{repo_id}"
    if not created:
        return hub_error(409, "You already created this model repo", url=url)
    return JSONResponse({"url": url, "name": repo_id, "id": repo_id})


@router.api_route(
    "/api/models/{namespace}/{name}/xet-write-token/{revision}", methods=["GET", "POST"]
)
@router.api_route(
    "/api/models/{namespace}/{name}/xet-read-token/{revision}", methods=["GET", "POST"]
)
def xet_token(namespace: str, name: str, revision: str) -> JSONResponse:
    return hub_error(
        400,
        "loreg does not speak the Xet storage protocol: set "
        "HF_HUB_DISABLE_XET=1 in the client's environment and retry",
    )


class _PreuploadFile(BaseModel):
    path: str = Field(max_length=1024)
    size: int = Field(ge=0)
    sample: str | None = Field(default=None, max_length=4096)


class _PreuploadBody(BaseModel):
    files: list[_PreuploadFile] = Field(max_length=1000)
    gitIgnore: str | None = Field(default=None, max_length=100_000)


@router.post("/api/models/{namespace}/{name}/preupload/{revision}")
def preupload(
    namespace: str,
    name: str,
    revision: str,
    body: _PreuploadBody,
    session: SessionDep,
    actor: OptionalUser,
) -> dict[str, Any]:
    """Every file goes through LFS (so its sha256 is known before the commit); ``oid`` is
    the sha256 of the file now at that path, so the client skips unchanged files."""
    hub.require_commit_access(session, actor, namespace, name)
    head = hub.head_files(session, actor, namespace, name)
    out = []
    for f in body.files:
        current = head.get(f.path)
        oid = None
        if current is not None:
            oid = hub.git_blob_id(b"") if current.size == 0 else current.sha256
        out.append({"path": f.path, "uploadMode": "lfs", "shouldIgnore": False, "oid": oid})
    return {"files": out}


async def _bounded_body(request: Request, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(
                f"the commit is larger than {limit} bytes; upload large files "
                "through LFS (the client does so by itself)"
            )
        parts.append(chunk)
    return b"".join(parts)


@router.post("/api/models/{namespace}/{name}/commit/{revision}")
async def commit(
    namespace: str,
    name: str,
    revision: str,
    request: Request,
    session: SessionDep,
    actor: OptionalUser,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        raise InvalidInput("loreg has no pull requests: commit to main")
    await run_in_threadpool(hub.require_commit_access, session, actor, namespace, name)
    req = hub.parse_commit(await _bounded_body(request, settings.hub_max_commit_bytes))
    await run_in_threadpool(hub.store_inline, store, req)

    def push() -> PushOutcome:
        outcome = hub.commit(
            session,
            store,
            actor,
            namespace,
            name,
            revision,
            req,
            max_version_bytes=settings.max_version_bytes,
        )
        session.commit()
        return outcome

    outcome = await run_in_threadpool(push)
    oid = hub.commit_id(outcome.version.digest)
    return JSONResponse(
        {
            "success": True,
            "commitOid": oid,
            "commitUrl": f"{base_url(request)}/{namespace}/{name}/commit/{oid}",
            "hookOutput": "",
            "pullRequestUrl": None,
            "loreg": {
                "version": outcome.version.number,
                "created": outcome.created,
                "digest": outcome.version.digest,
            },
        }
    )
