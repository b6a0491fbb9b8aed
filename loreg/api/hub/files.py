"""The read side: repo info, file trees, refs, history, and file downloads (``resolve``).

Downloads answer like the Hub's LFS files: ``ETag`` and ``X-Linked-Etag`` are the file's
sha256, ``X-Linked-Size`` its size and ``X-Repo-Commit`` the commit the revision resolved
to. An S3 store answers with a 302 to a presigned URL (the Hub's CDN redirect); a local
store streams the bytes, with Range support.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from loreg.api.deps import OptionalUser, SessionDep, SettingsDep, StoreDep
from loreg.api.hub.route import HubRoute, hub_error
from loreg.api.routers.blobs import _parse_range
from loreg.api.streaming import iter_file
from loreg.errors import InvalidInput
from loreg.services import hub
from loreg.storage import BlobStore

router = APIRouter(route_class=HubRoute)

MAX_PATHS = 1000


def iso(moment: datetime) -> str:
    """The Hub's timestamp form: UTC with milliseconds and a ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _file_entry(f: hub.HubFile, snap: hub.Snapshot, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "file",
        "oid": f.blob_id,
        "size": f.size,
        "path": f.path,
        "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)},
    }
    if expand:
        entry["lastCommit"] = {
            "id": snap.commit,
            "title": _title(snap),
            "date": iso(snap.last_modified),
        }
    return entry


def _dir_entry(path: str, snap: hub.Snapshot) -> dict[str, Any]:
    oid = hashlib.sha1(f"{snap.commit}:{path}".encode(), usedforsecurity=False).hexdigest()
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def _title(snap: hub.Snapshot) -> str:
    if snap.version is not None:
        return (snap.version.description or "").partition("\n")[
            0
        ] or f"version {snap.version.number}"
    return "merge output" if snap.job is not None else "initial commit"


def model_info(snap: hub.Snapshot, store: BlobStore) -> dict[str, Any]:
    namespace = snap.repo_id.partition("/")[0]
    card = hub.card_data(store, snap)
    tags = ["safetensors"]
    info: dict[str, Any] = {
        "_id": snap.commit[:24],
        "id": snap.repo_id,
        "modelId": snap.repo_id,
        "author": namespace,
        "sha": snap.commit,
        "lastModified": iso(snap.last_modified),
        "createdAt": iso(snap.created_at),
        "private": snap.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": tags,
        "cardData": card,
        "spaces": [],
        "usedStorage": sum(f.size for f in snap.files),
        "siblings": [
            {
                "rfilename": f.path,
                "size": f.size,
                "blobId": f.blob_id,
                "lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": len(f.pointer)},
            }
            for f in snap.files
        ],
    }
    version = snap.version
    if version is not None:
        base = version.base_model
        info["library_name"] = "peft"
        tags[:0] = ["peft", "lora"]
        if base is not None:
            tags.append(f"base_model:adapter:{base.name}")
        info["loreg"] = {
            "ref": f"{snap.repo_id}@{version.number}",
            "number": version.number,
            "digest": version.digest,
            "tags": snap.tags,
            "base": None if base is None else {"name": base.name, "fingerprint": base.fingerprint},
            "r": version.r,
            "lora_alpha": version.lora_alpha,
            "target_modules": version.target_modules,
            "validation_state": version.validation_state,
        }
    elif snap.job is not None:
        info["loreg"] = {"job_id": snap.job.id, "job_type": snap.job.type}
    return info


@router.get("/api/models/{namespace}/{name}")
def get_model_info(
    namespace: str, name: str, session: SessionDep, actor: OptionalUser, store: StoreDep
) -> dict[str, Any]:
    return model_info(hub.snapshot(session, actor, namespace, name), store)


@router.get("/api/models/{namespace}/{name}/revision/{revision:path}")
def get_model_info_at(
    namespace: str,
    name: str,
    revision: str,
    session: SessionDep,
    actor: OptionalUser,
    store: StoreDep,
) -> dict[str, Any]:
    return model_info(hub.snapshot(session, actor, namespace, name, revision), store)


def _tree(snap: hub.Snapshot, path: str, recursive: bool, expand: bool) -> list[dict[str, Any]]:
    prefix = path.strip("/") + "/" if path.strip("/") else ""
    entries: dict[str, dict[str, Any]] = {}
    for f in snap.files:
        if not f.path.startswith(prefix):
            continue
        rest = f.path[len(prefix) :].split("/")
        for depth in range(1, len(rest)):
            folder = prefix + "/".join(rest[:depth])
            if recursive or depth == 1:
                entries.setdefault(folder, _dir_entry(folder, snap))
        if recursive or len(rest) == 1:
            entries[f.path] = _file_entry(f, snap, expand)
    if prefix and not entries:
        raise hub.EntryNotFound(f"Entry not found: {path[:200]}", commit=snap.commit)
    return [entries[k] for k in sorted(entries)]


@router.get("/api/models/{namespace}/{name}/tree/{revision}")
@router.get("/api/models/{namespace}/{name}/tree/{revision}/{path:path}")
def list_tree(
    namespace: str,
    name: str,
    revision: str,
    session: SessionDep,
    actor: OptionalUser,
    path: str = "",
    recursive: bool = False,
    expand: bool = False,
) -> list[dict[str, Any]]:
    snap = hub.snapshot(session, actor, namespace, name, revision)
    return _tree(snap, path, recursive, expand)


@router.post("/api/models/{namespace}/{name}/paths-info/{revision}")
async def paths_info(
    namespace: str,
    name: str,
    revision: str,
    request: Request,
    session: SessionDep,
    actor: OptionalUser,
) -> list[dict[str, Any]]:
    body = await request.body()
    if len(body) > 1024 * 1024:
        raise InvalidInput("too many paths")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body)
            paths, expand = list(data.get("paths", [])), bool(data.get("expand", False))
        except (ValueError, AttributeError, TypeError):
            raise InvalidInput("the body must be JSON with 'paths'") from None
    else:
        form = parse_qs(body.decode("utf-8", "replace"))
        paths = form.get("paths", [])
        expand = form.get("expand", ["false"])[0].lower() == "true"
    if len(paths) > MAX_PATHS or not all(isinstance(p, str) for p in paths):
        raise InvalidInput(f"'paths' must be at most {MAX_PATHS} strings")
    snap = hub.snapshot(session, actor, namespace, name, revision)
    by_path = {f.path: f for f in snap.files}
    folders = {
        "/".join(f.path.split("/")[:i]) for f in snap.files for i in range(1, f.path.count("/") + 1)
    }
    out = []
    for p in paths:
        p = p.strip("/")
        if p in by_path:
            out.append(_file_entry(by_path[p], snap, expand))
        elif p in folders:
            out.append(_dir_entry(p, snap))
    return out


@router.get("/api/models/{namespace}/{name}/refs")
def list_refs(
    namespace: str, name: str, session: SessionDep, actor: OptionalUser
) -> dict[str, Any]:
    main, tags = hub.refs(session, actor, namespace, name)

    def out(r: hub.Ref) -> dict[str, str]:
        return {"name": r.name, "ref": r.ref, "targetCommit": r.commit}

    return {
        "branches": [out(main)],
        "converts": [],
        "tags": [out(t) for t in tags],
        "pullRequests": [],
    }


@router.get("/api/models/{namespace}/{name}/commits/{revision}")
def list_commits(
    namespace: str, name: str, revision: str, session: SessionDep, actor: OptionalUser
) -> list[dict[str, Any]]:
    return [
        {
            "id": c.commit,
            "title": c.title,
            "message": c.message,
            "date": iso(c.date),
            "authors": [{"user": c.author, "avatar": None}] if c.author else [],
        }
        for c in hub.commits(session, actor, namespace, name, revision)
    ]


@router.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
def resolve_file(
    namespace: str,
    name: str,
    revision: str,
    path: str,
    request: Request,
    session: SessionDep,
    actor: OptionalUser,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    snap = hub.snapshot(session, actor, namespace, name, revision)
    f = snap.file(path)
    session.close()
    headers = {
        "X-Repo-Commit": snap.commit,
        "ETag": f'"{f.sha256}"',
        "X-Linked-Etag": f'"{f.sha256}"',
        "X-Linked-Size": str(f.size),
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=0",
    }
    url = store.presigned_url(f.digest, expires_in=settings.presign_expires_seconds)
    if url is not None:
        return Response(status_code=302, headers={**headers, "Location": url})
    if request.method == "HEAD":
        return Response(
            status_code=200,
            media_type="application/octet-stream",
            headers={**headers, "Content-Length": str(f.size)},
        )
    wanted = _parse_range(request.headers.get("range"), f.size)
    if wanted == "unsatisfiable":
        return hub_error(
            416, "the requested range is outside the file", {"Content-Range": f"bytes */{f.size}"}
        )
    if wanted is None:
        return StreamingResponse(
            iter_file(store.open(f.digest), length=f.size),
            media_type="application/octet-stream",
            headers={**headers, "Content-Length": str(f.size)},
        )
    assert isinstance(wanted, tuple)
    start, end = wanted
    return StreamingResponse(
        iter_file(store.open(f.digest, start, end + 1), length=end - start + 1),
        status_code=206,
        media_type="application/octet-stream",
        headers={
            **headers,
            "Content-Length": str(end - start + 1),
            "Content-Range": f"bytes {start}-{end}/{f.size}",
        },
    )


@router.get("/api/datasets/{rest:path}")
@router.get("/api/spaces/{rest:path}")
def other_repo_types(rest: str) -> JSONResponse:
    return hub_error(
        404,
        "Repository not found: loreg hosts model repositories only",
        {"X-Error-Code": "RepoNotFound"},
    )
