"""Versions: push (create from a manifest), list, show, soft delete; ``/resolve`` any ref."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from loreg.api.deps import CurrentUser, OptionalUser, SessionDep, SettingsDep, StoreDep
from loreg.api.openapi import errors
from loreg.api.routers._views import version_out, version_view_out
from loreg.api.schemas.versions import PushRequest, PushResponse, VersionList, VersionOut
from loreg.services import adapters as svc
from loreg.services import reads
from loreg.services.manifests import FileEntry
from loreg.services.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(tags=["versions"])


@router.post(
    "/adapters/{namespace}/{name}/versions",
    status_code=201,
    response_model=PushResponse,
    responses={
        **errors(403, 404, 409, 413, 422),
        200: {"model": PushResponse, "description": "Identical content: the existing version"},
    },
    summary="Push a version from uploaded blobs (200 when the content exists)",
)
def push_version(
    namespace: str,
    name: str,
    body: PushRequest,
    session: SessionDep,
    actor: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
) -> PushResponse:
    """Step 3 of a push: create a version from uploaded blobs. The registry reads
    `adapter_config.json` and the safetensors header, checks every LoRA module against the
    base model's manifest, and commits the version with its tags and labels; a validation
    job is queued. Identical content answers the existing version (200). 422 carries the
    compatibility report, module by module. `public` only applies to a new adapter (409 when
    it disagrees with an existing one).
    """
    spec = svc.PushSpec(
        files=[FileEntry(f.path, f.digest, f.size) for f in body.files],
        base=body.base,
        tags=body.tags,
        labels=dict(body.labels),
        description=body.description,
        public=body.public,
    )
    outcome = svc.push_version(
        session,
        store,
        actor,
        namespace,
        name,
        spec,
        max_version_bytes=settings.max_version_bytes,
        max_tensors=settings.max_adapter_tensors,
    )
    session.commit()
    if not outcome.created:
        response.status_code = 200
    out = version_out(session, outcome.version)
    return PushResponse(
        **out.model_dump(),
        created=outcome.created,
        job_id=outcome.job.id if outcome.job is not None else None,
    )


@router.get(
    "/adapters/{namespace}/{name}/versions",
    response_model=VersionList,
    summary="List versions, newest first",
    responses=errors(404),
)
def list_versions(
    namespace: str,
    name: str,
    session: SessionDep,
    actor: OptionalUser,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    include_deleted: bool = False,
) -> VersionList:
    """The adapter's versions, newest first (`include_deleted` adds deleted ones with their
    reason). Page with `cursor`.
    """
    page = reads.list_versions(
        session, actor, namespace, name, cursor=cursor, limit=limit, include_deleted=include_deleted
    )
    return VersionList(
        versions=[version_view_out(v) for v in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/adapters/{namespace}/{name}/versions/{ref}",
    response_model=VersionOut,
    summary="Show a version (number or sha256:<hex>) with its manifest",
    responses=errors(404),
)
def show_version(
    namespace: str,
    name: str,
    ref: str,
    session: SessionDep,
    actor: OptionalUser,
    include_deleted: bool = False,
) -> VersionOut:
    """One version by number or `sha256:<hex>` digest: what it is (peft type, rank, alpha,
    targets, dtype), its base, labels, files, lineage, tags and validation state.
    """
    return version_view_out(
        reads.show_version(session, actor, namespace, name, ref, include_deleted=include_deleted)
    )


@router.delete(
    "/adapters/{namespace}/{name}/versions/{ref}",
    response_model=VersionOut,
    summary="Delete a version (soft: recorded with a reason; blobs stay)",
    responses=errors(403, 404),
)
def delete_version(
    namespace: str,
    name: str,
    ref: str,
    session: SessionDep,
    actor: CurrentUser,
    reason: Annotated[str, Query(min_length=1, max_length=1000)],
) -> VersionOut:
    """Soft-delete a version with a reason: its number and digest stay reserved and its blobs
    stay, its tags are removed and `latest` falls back to the newest live version. Restore
    it with `POST .../restore`.
    """
    version = svc.delete_version(session, actor, namespace, name, ref, reason)
    session.commit()
    return version_out(session, version)


@router.post(
    "/adapters/{namespace}/{name}/versions/{ref}/restore",
    response_model=VersionOut,
    summary="Restore a deleted version",
    responses=errors(403, 404, 409),
)
def restore_version(
    namespace: str,
    name: str,
    ref: str,
    session: SessionDep,
    actor: CurrentUser,
) -> VersionOut:
    """Undo a delete: the version (by number or ``sha256:<hex>``) resolves again. Tags it lost
    when it was deleted are not put back; an automatic ``latest`` follows it if it is now the
    newest. 409 when the version is not deleted."""
    version = svc.restore_version(session, actor, namespace, name, ref)
    session.commit()
    return version_out(session, version)


@router.get(
    "/resolve",
    response_model=VersionOut,
    summary="Resolve ns/name, ns/name:tag, ns/name@N or ns/name@sha256:<hex>",
    responses=errors(404),
)
def resolve(
    session: SessionDep,
    actor: OptionalUser,
    ref: Annotated[str, Query(min_length=1, max_length=400)],
) -> VersionOut:
    """The version any reference names: `ns/name` (tag `latest`), `ns/name:tag`, `ns/name@7` or
    `ns/name@sha256:<hex>`.
    """
    return version_view_out(reads.resolve(session, actor, ref))
