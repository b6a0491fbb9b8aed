"""Tags: list, set or move, delete (protected tags: namespace admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from loreg.api.deps import CurrentUser, OptionalUser, SessionDep
from loreg.api.openapi import errors
from loreg.api.routers._views import tag_out
from loreg.api.schemas.versions import TagList, TagOut, TagSet
from loreg.services import adapters as svc

router = APIRouter(tags=["tags"])


@router.get(
    "/adapters/{namespace}/{name}/tags",
    response_model=TagList,
    summary="List tags",
    responses=errors(404),
)
def list_tags(namespace: str, name: str, session: SessionDep, actor: OptionalUser) -> TagList:
    """The adapter's tags with the version each points at, whether it is protected, and who set
    it (`automatic` for `latest` following the newest version).
    """
    return TagList(
        tags=[tag_out(session, t) for t in svc.list_tags(session, actor, namespace, name)]
    )


@router.put(
    "/adapters/{namespace}/{name}/tags/{tag}",
    response_model=TagOut,
    summary="Point a tag at a version (setting 'latest' pins it)",
    responses=errors(403, 404),
)
def set_tag(
    namespace: str, name: str, tag: str, body: TagSet, session: SessionDep, actor: CurrentUser
) -> TagOut:
    """Point a tag at a version (number or digest), creating or moving it. `protected: true`
    protects it (then only namespace admins may move or delete it). Setting `latest` pins
    it.
    """
    row = svc.set_tag(
        session, actor, namespace, name, tag, str(body.version), protected=body.protected
    )
    session.commit()
    return tag_out(session, row)


@router.delete(
    "/adapters/{namespace}/{name}/tags/{tag}",
    status_code=204,
    summary="Delete a tag (deleting 'latest' makes it follow the newest again)",
    responses=errors(403, 404),
)
def delete_tag(
    namespace: str, name: str, tag: str, session: SessionDep, actor: CurrentUser
) -> Response:
    """Remove a tag. Deleting `latest` makes it follow the newest version again."""
    svc.delete_tag(session, actor, namespace, name, tag)
    session.commit()
    return Response(status_code=204)
