"""Adapters: search/list, show, update visibility and description."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from loreg.api.deps import CurrentUser, OptionalUser, SessionDep
from loreg.api.openapi import errors
from loreg.api.routers._views import adapter_view_out, adapters_out
from loreg.api.schemas.versions import AdapterList, AdapterOut, AdapterPatch
from loreg.services import adapters as svc
from loreg.services.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(tags=["adapters"])


@router.get(
    "/adapters",
    response_model=AdapterList,
    summary="Search adapters the caller may read (newest first)",
)
def search_adapters(
    session: SessionDep,
    actor: OptionalUser,
    namespace: Annotated[str | None, Query(max_length=96)] = None,
    base: Annotated[str | None, Query(max_length=256, description="base model name")] = None,
    target: Annotated[str | None, Query(max_length=512, description="target module")] = None,
    rank_min: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    rank_max: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    label: Annotated[list[str] | None, Query(max_length=64, description="key=value")] = None,
    text: Annotated[str | None, Query(max_length=256, description="in name or description")] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AdapterList:
    """Adapters the caller may read, newest first, with their latest version. Version filters
    (`base`, `target`, `rank_min`/`rank_max`, `label`) must all hold for one live version;
    `text` searches names and descriptions. Page with `cursor`.
    """
    filters = svc.SearchFilters(
        namespace=namespace,
        base=base,
        target=target,
        rank_min=rank_min,
        rank_max=rank_max,
        labels=label or [],
        text=text,
    )
    page = svc.search_views(session, actor, filters, cursor=cursor, limit=limit)
    return AdapterList(
        adapters=[adapter_view_out(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/adapters/{namespace}/{name}",
    response_model=AdapterOut,
    summary="Show an adapter",
    responses=errors(404),
)
def show_adapter(namespace: str, name: str, session: SessionDep, actor: OptionalUser) -> AdapterOut:
    """One adapter: visibility, description, version count, latest version and tags. Private
    adapters are a 404 to anyone who may not read them.
    """
    adapter = svc.get_adapter(session, actor, namespace, name)
    return adapters_out(session, svc.summarize(session, [adapter]))[0]


@router.patch(
    "/adapters/{namespace}/{name}",
    response_model=AdapterOut,
    summary="Change visibility (namespace admins) or description (writers)",
    responses=errors(403, 404),
)
def update_adapter(
    namespace: str, name: str, body: AdapterPatch, session: SessionDep, actor: CurrentUser
) -> AdapterOut:
    """Change the description (writers) or the visibility (`public`: namespace admins).
    Visibility applies to every version; a push never changes it.
    """
    adapter = svc.update_adapter(
        session, actor, namespace, name, public=body.public, description=body.description
    )
    session.commit()
    return adapters_out(session, svc.summarize(session, [adapter]))[0]
