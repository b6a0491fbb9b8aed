"""Blobs: ``PUT`` streams a body into the store with digest verification; ``GET``/``HEAD``
read one (307 to a presigned URL where the store signs, else streamed with Range support).

The upload never holds the body in memory: chunks flow from the request through a small
bounded queue into ``BlobStore.put`` running in a worker thread (``loreg.api.streaming``).
The ``blobs`` row is added only after the store verified the digest.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from loreg.api.deps import OptionalUser, SessionDep, SettingsDep, StoreDep
from loreg.api.errors import error_response
from loreg.api.etags import none_match
from loreg.api.openapi import errors
from loreg.api.schemas.blobs import BlobInfo
from loreg.api.streaming import iter_file, stream_to_sync
from loreg.errors import InvalidInput, TooLarge
from loreg.services import blobs

router = APIRouter(tags=["blobs"])

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_MAX_LENGTH_DIGITS = 19


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
        raise InvalidInput("invalid Content-Length header")
    return int(value)


@router.put(
    "/blobs/{digest}",
    status_code=201,
    response_model=BlobInfo,
    responses={
        **errors(403, 413),
        200: {"model": BlobInfo, "description": "The blob existed already (verified)"},
    },
    summary="Upload a blob (body: its bytes; verified against the digest)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_blob(
    digest: str,
    request: Request,
    session: SessionDep,
    actor: OptionalUser,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    """Stream a file's bytes (the request body) to the store while hashing them. The digest in
    the path must match or nothing is kept (400). 201 when stored, 200 when the registry
    already had it. Needs a write-scoped token.
    """
    blobs.authorize_upload(actor, digest)
    limit = settings.max_blob_bytes
    expected = _content_length(request)
    if expected is not None and expected > limit:
        raise TooLarge(
            f"blob is larger than the limit of {limit} bytes",
            details={"limit": limit, "content_length": expected},
        )
    try:
        size = await stream_to_sync(
            request.stream(),
            lambda source: blobs.store_blob(store, digest, source, max_size=limit),
            max_bytes=limit,
            expected_length=expected,
        )
    except ClientDisconnect:
        raise InvalidInput("upload incomplete: the client disconnected") from None

    def record() -> bool:
        _, created = blobs.record_blob(session, actor, digest, size)
        session.commit()
        return created

    created = await run_in_threadpool(record)
    return JSONResponse(
        BlobInfo(digest=digest, size=size).model_dump(),
        status_code=201 if created else 200,
        headers={"Location": f"{request.scope.get('root_path', '')}/api/v1/blobs/{digest}"},
    )


def _etag(digest: str) -> str:
    return f'"{digest}"'


def _blob_headers(digest: str) -> dict[str, str]:
    return {
        "ETag": _etag(digest),
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=31536000, immutable",
    }


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end_inclusive)``; ``None`` to serve everything; ``"unsatisfiable"``."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m[1] and not m[2]) or len(m[1]) > 19 or len(m[2]) > 19:
        return None  # not a single byte range we understand: ignore it (RFC 9110 14.2)
    if not m[1]:  # suffix: the last N bytes
        n = int(m[2])
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(m[1])
    end = int(m[2]) if m[2] else None
    if end is not None and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    end = size - 1 if end is None else end
    return start, min(end, size - 1)


@router.head(
    "/blobs/{digest}", summary="Blob size and digest, without the bytes", responses=errors(404)
)
def head_blob(digest: str, session: SessionDep, actor: OptionalUser) -> Response:
    """Whether a blob the caller may read exists, and its size (`Content-Length`)."""
    blob = blobs.require_readable_blob(session, actor, digest)
    return Response(
        status_code=200,
        media_type="application/octet-stream",
        headers={**_blob_headers(digest), "Content-Length": str(blob.size)},
    )


@router.get(
    "/blobs/{digest}",
    summary="Download a blob: 307 to the store, or the bytes (Range supported)",
    responses={
        **errors(404, 416),
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "Partial content"},
        307: {"description": "Redirect to a presigned URL"},
    },
)
def get_blob(
    digest: str,
    request: Request,
    session: SessionDep,
    actor: OptionalUser,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    """Download a blob. On S3 the answer is a 307 to a presigned URL (follow it without the
    registry token); on local storage the bytes, with `Range` support (206). A blob is
    readable when a version, base or job output the caller may read holds it. Its bytes
    never change: `ETag` is its digest, `If-None-Match` with it answers 304.
    """
    blob = blobs.require_readable_blob(session, actor, digest)
    size = blob.size
    session.close()
    # after the access check: a 304 reveals nothing more
    if none_match(request.headers.get("if-none-match"), _etag(digest)):
        return Response(status_code=304, headers=_blob_headers(digest))
    url = store.presigned_url(digest, expires_in=settings.presign_expires_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    headers = _blob_headers(digest)
    wanted = _parse_range(request.headers.get("range"), size)
    if wanted == "unsatisfiable":
        return error_response(
            416,
            "range_not_satisfiable",
            "the requested range is outside the blob",
            {"size": size},
            headers={"Content-Range": f"bytes */{size}"},
        )
    if wanted is None:
        return StreamingResponse(
            iter_file(store.open(digest), length=size),
            media_type="application/octet-stream",
            headers={**headers, "Content-Length": str(size)},
        )
    assert isinstance(wanted, tuple)
    start, end = wanted
    length = end - start + 1
    return StreamingResponse(
        iter_file(store.open(digest, start, end + 1), length=length),
        status_code=206,
        media_type="application/octet-stream",
        headers={
            **headers,
            "Content-Length": str(length),
            "Content-Range": f"bytes {start}-{end}/{size}",
        },
    )
