"""Tags: list, set or move, delete (protected tags: namespace admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from loreg.api.deps import CurrentUser, OptionalUser, SessionDep
from loreg.api.routers._views import tag_out
from loreg.api.schemas.versions import TagList, TagOut, TagSet
from loreg.services import adapters as svc

router = APIRouter(tags=["tags"])


@router.get("/adapters/{namespace}/{name}/tags", response_model=TagList, summary="List tags")
def list_tags(namespace: str, name: str, session: SessionDep, actor: OptionalUser) -> TagList:
    return TagList(tags=[tag_out(session, t)
                         for t in svc.list_tags(session, actor, namespace, name)])


@router.put("/adapters/{namespace}/{name}/tags/{tag}", response_model=TagOut,
            summary="Point a tag at a version (setting 'latest' pins it)")
def set_tag(
    namespace: str, name: str, tag: str, body: TagSet, session: SessionDep, actor: CurrentUser
) -> TagOut:
    row = svc.set_tag(session, actor, namespace, name, tag, str(body.version),
                      protected=body.protected)
    session.commit()
    return tag_out(session, row)


@router.delete("/adapters/{namespace}/{name}/tags/{tag}", status_code=204,
               summary="Delete a tag (deleting 'latest' makes it follow the newest again)")
def delete_tag(
    namespace: str, name: str, tag: str, session: SessionDep, actor: CurrentUser
) -> Response:
    svc.delete_tag(session, actor, namespace, name, tag)
    session.commit()
    return Response(status_code=204)
