"""The base model pages: the list, and one base with the adapters made for it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loreg.api.deps import SessionDep
from loreg.errors import InvalidInput
from loreg.services import adapters as svc
from loreg.services import bases
from loreg.services.pagination import Page
from loreg.ui.adapter_pages import summary_row
from loreg.ui.params import PAGE_SIZE, Text, opt
from loreg.ui.rendering import friendly, render
from loreg.ui.session import UiActor

router = APIRouter(include_in_schema=False)


@router.get("/bases")
def base_list(
    request: Request, session: SessionDep, actor: UiActor, q: Text = None, cursor: Text = None
) -> Response:
    error = None
    page: Page[Any] = Page([], None)
    try:
        page = bases.list_bases(session, query=opt(q), cursor=opt(cursor), limit=PAGE_SIZE)
    except InvalidInput as exc:
        error = exc.message
    params = [("q", q)] if opt(q) else []
    next_url = (
        "/ui/bases?" + urlencode([*params, ("cursor", page.next_cursor)])
        if page.next_cursor
        else None
    )
    return render(
        request,
        "bases.html",
        {"bases": page.items, "q": q or "", "error": error, "next_url": next_url},
        status=400 if error else 200,
    )


@router.get("/bases/{name:path}")
@friendly("base model")
def base_page(
    request: Request, name: str, session: SessionDep, actor: UiActor, cursor: Text = None
) -> Response:
    base = bases.get_base(session, name)
    try:
        page = svc.search(
            session, actor, svc.SearchFilters(base=base.name), cursor=opt(cursor), limit=PAGE_SIZE
        )
    except InvalidInput:
        page = svc.search(session, actor, svc.SearchFilters(base=base.name), limit=PAGE_SIZE)
    users = svc.user_names(session, [base.created_by])
    next_url = (
        f"/ui/bases/{base.name}?" + urlencode({"cursor": page.next_cursor})
        if page.next_cursor
        else None
    )
    return render(
        request,
        "base.html",
        {
            "base": base,
            "rows": [summary_row(s) for s in page.items],
            "next_url": next_url,
            "created_by": users.get(base.created_by or -1),
            "num_tensors": len(base.manifest or {}),
            "title": base.name,
        },
    )
