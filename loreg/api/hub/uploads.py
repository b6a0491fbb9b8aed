"""The LFS side of a Hub upload: the batch API, signed upload URLs (one PUT, or multipart
parts and a completion), and verify.

Every object ends as a blob through the same service calls as ``PUT /api/v1/blobs``
(``authorize_upload``, ``store_blob``, ``record_blob``), as the user whose token the batch
call carried (``loreg.services.hub_uploads`` explains the signed URLs).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from loreg.api.deps import OptionalUser, SessionDep, SettingsDep, StoreDep
from loreg.api.hub.repos import base_url
from loreg.api.hub.route import HubRoute
from loreg.api.streaming import stream_to_sync
from loreg.digests import validate_digest
from loreg.errors import InvalidInput, NotFound, TooLarge
from loreg.services import blobs, hub, hub_uploads
from loreg.services.permissions import require_scope

router = APIRouter(route_class=HubRoute)

LFS_JSON = "application/vnd.git-lfs+json"
MAX_OBJECTS = 1000


def _repo_name(name_git: str) -> str:
    if not name_git.endswith(".git"):
        raise NotFound("Not found")
    return name_git[:-4]


class _Object(BaseModel):
    oid: str = Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class _Batch(BaseModel):
    operation: str = Field(max_length=16)
    transfers: list[str] = Field(default_factory=lambda: ["basic"], max_length=16)
    objects: list[_Object] = Field(max_length=MAX_OBJECTS)
    hash_algo: str = Field(default="sha256", max_length=16)


@router.post("/{namespace}/{name_git}/info/lfs/objects/batch")
def lfs_batch(
    namespace: str,
    name_git: str,
    body: _Batch,
    request: Request,
    session: SessionDep,
    actor: OptionalUser,
    settings: SettingsDep,
) -> JSONResponse:
    name = _repo_name(name_git)
    if body.operation != "upload":
        raise InvalidInput(
            "loreg's LFS endpoint takes uploads; download files through "
            "/{repo}/resolve/{revision}/{path}"
        )
    if body.hash_algo != "sha256":
        raise InvalidInput("only sha256 object ids are supported")
    offered = set(body.transfers)
    if not offered & {"basic", "multipart"}:
        raise InvalidInput("loreg offers the 'basic' and 'multipart' transfers")
    objects = [(o.oid, o.size) for o in body.objects]
    missing = set(hub.missing_objects(session, actor, namespace, name, objects))
    principal = require_scope(actor, "write")
    root = base_url(request)
    key = hub_uploads.signing_key(session, principal.token_id or -1)
    out: list[dict[str, Any]] = []
    chosen = "basic"
    for oid, size in objects:
        item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
        if size > settings.max_blob_bytes:
            item["error"] = {
                "code": 413,
                "message": f"object is larger than the limit of {settings.max_blob_bytes} bytes",
            }
        elif f"sha256:{oid}" in missing:
            multipart = "multipart" in offered and (
                "basic" not in offered or size >= settings.hub_multipart_threshold_bytes
            )
            item["actions"] = _actions(
                root,
                namespace,
                name,
                key,
                principal,
                oid,
                size,
                settings.hub_multipart_chunk_bytes if multipart else 0,
            )
            chosen = "multipart" if multipart else chosen
        out.append(item)
    return JSONResponse(
        {"transfer": chosen, "objects": out, "hash_algo": "sha256"}, media_type=LFS_JSON
    )


def _actions(
    root: str, namespace: str, name: str, key: str, principal: Any, oid: str, size: int, chunk: int
) -> dict[str, Any]:
    grant = hub_uploads.grant(principal, oid, size, chunk=chunk)
    href = f"{root}/api/lfs/objects/{oid}?{grant.query(key)}"
    header: dict[str, str] = {}
    if chunk:
        header["chunk_size"] = str(chunk)
        for part in range(1, grant.parts + 1):
            header[f"{part:05d}"] = (
                f"{root}/api/lfs/objects/{oid}/parts/{part}?{grant.query(key, part)}"
            )
    upload: dict[str, Any] = {"href": href, "expires_in": hub_uploads.UPLOAD_URL_SECONDS}
    if header:
        upload["header"] = header
    return {
        "upload": upload,
        "verify": {"href": f"{root}/{namespace}/{name}.git/info/lfs/objects/verify"},
    }


@router.post("/{namespace}/{name_git}/info/lfs/objects/verify")
def lfs_verify(
    namespace: str, name_git: str, body: _Object, session: SessionDep, actor: OptionalUser
) -> JSONResponse:
    """Whether the object arrived (the same answer ``POST /api/v1/uploads`` gives)."""
    name = _repo_name(name_git)
    if hub.missing_objects(session, actor, namespace, name, [(body.oid, body.size)]):
        raise NotFound(f"object {body.oid} was not uploaded")
    return JSONResponse({"message": "ok"}, media_type=LFS_JSON)


Signed = Annotated[str, Query(min_length=64, max_length=64)]


def _check(
    session: Session,
    oid: str,
    size: int,
    tid: int,
    exp: int,
    chunk: int,
    sig: str,
    part: int | None = None,
) -> tuple[hub_uploads.UploadGrant, Any]:
    validate_digest(f"sha256:{oid}")
    found, principal = hub_uploads.check_grant(session, oid, size, tid, exp, chunk, sig, part=part)
    blobs.authorize_upload(principal, found.digest)
    return found, principal


def _length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise InvalidInput("invalid Content-Length header")
    return int(value)


def _record(session: Session, principal: Any, digest: str, size: int) -> None:
    blobs.record_blob(session, principal, digest, size)
    session.commit()


@router.put("/api/lfs/objects/{oid}")
async def lfs_upload(
    oid: str,
    request: Request,
    session: SessionDep,
    store: StoreDep,
    size: Annotated[int, Query(ge=0)],
    tid: int,
    exp: int,
    sig: Signed,
    chunk: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The single-PUT (``basic``) upload of one object."""
    grant, principal = await run_in_threadpool(_check, session, oid, size, tid, exp, chunk, sig)
    if grant.chunk:
        raise InvalidInput("this upload is multipart: PUT its parts, then POST the completion")
    expected = _length(request)
    if expected is not None and expected != grant.size:
        raise InvalidInput(f"the body has {expected} bytes; this object has {grant.size}")
    try:
        stored = await stream_to_sync(
            request.stream(),
            lambda source: blobs.store_blob(store, grant.digest, source, max_size=grant.size),
            max_bytes=grant.size,
            expected_length=expected,
        )
    except ClientDisconnect:
        raise InvalidInput("upload incomplete: the client disconnected") from None
    await run_in_threadpool(_record, session, principal, grant.digest, stored)
    return Response(status_code=200)


@router.put("/api/lfs/objects/{oid}/parts/{part}")
async def lfs_upload_part(
    oid: str,
    part: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    size: Annotated[int, Query(ge=0)],
    tid: int,
    exp: int,
    sig: Signed,
    chunk: Annotated[int, Query(ge=1)],
) -> Response:
    grant, _ = await run_in_threadpool(_check, session, oid, size, tid, exp, chunk, sig, part)
    session.close()
    want = hub_uploads.part_length(grant, part)
    try:
        await stream_to_sync(
            request.stream(),
            lambda source: hub_uploads.write_part(settings.home, grant, part, source),
            max_bytes=want,
            expected_length=_length(request),
        )
    except ClientDisconnect:
        raise InvalidInput("upload incomplete: the client disconnected") from None
    except TooLarge:
        raise InvalidInput(f"part {part} is larger than {want} bytes") from None
    return Response(status_code=200, headers={"ETag": hub_uploads.part_etag(grant, part)})


class _Part(BaseModel):
    partNumber: int = Field(ge=1, le=hub_uploads.MAX_PARTS)
    etag: str = Field(max_length=200)


class _Completion(BaseModel):
    oid: str = Field(max_length=64)
    parts: list[_Part] = Field(max_length=hub_uploads.MAX_PARTS)


@router.post("/api/lfs/objects/{oid}")
def lfs_complete(
    oid: str,
    body: _Completion,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    size: Annotated[int, Query(ge=0)],
    tid: int,
    exp: int,
    sig: Signed,
    chunk: Annotated[int, Query(ge=1)],
) -> Response:
    """Assemble the parts in order into the blob (verified while it is written)."""
    grant, principal = _check(session, oid, size, tid, exp, chunk, sig)
    if body.oid != oid:
        raise InvalidInput("the completion names another object")
    parts = sorted(body.parts, key=lambda p: p.partNumber)
    if [p.partNumber for p in parts] != list(range(1, len(parts) + 1)):
        raise InvalidInput("the completion must list parts 1..N once each")
    with hub_uploads.assembled(settings.home, grant, [p.etag for p in parts]) as reader:
        stored = blobs.store_blob(store, grant.digest, reader, max_size=grant.size)
    _record(session, principal, grant.digest, stored)
    return Response(status_code=200)
