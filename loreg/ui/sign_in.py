"""Signing in to the web page with an API token, and signing out (``loreg.ui.session``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from loreg.api.deps import SettingsDep, authenticate_token, get_sessionmaker
from loreg.errors import LoregError, Unauthenticated
from loreg.services import ui_sessions
from loreg.ui.rendering import error_page, finish, render
from loreg.ui.session import (
    COOKIE,
    COOKIE_PATH,
    FormDep,
    UiActor,
    csrf_ok,
    safe_next,
    same_origin,
)

log = logging.getLogger("loreg.ui")

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_form(
    request: Request, actor: UiActor, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login")
def login(request: Request, form: FormDep, settings: SettingsDep) -> Response:
    request.state.ui_actor = None
    target = safe_next(form.get("next"))
    if not same_origin(request):
        return error_page(request, 403, "Forbidden", "This form must be sent from this site.")
    token = form.get("token", "").strip()
    try:
        if not token:
            raise Unauthenticated("paste an API token")
        principal = authenticate_token(request, token)
    except LoregError:
        ctx = {"next": target, "error": "That token is not valid (unknown, expired or revoked)."}
        return render(request, "login.html", ctx, status=401)
    lifetime = timedelta(hours=settings.ui_session_hours)
    with get_sessionmaker(request)() as session:
        session_id = ui_sessions.start(session, principal, lifetime=lifetime)
        session.commit()
    log.info("ui sign-in by %s", principal.username)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(lifetime.total_seconds()),
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )
    return finish(request, response)


@router.post("/logout")
def logout(request: Request, form: FormDep) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie and not csrf_ok(request, form, cookie):
        return error_page(
            request,
            403,
            "Forbidden",
            "The sign-out form has expired; reload the page and try again.",
        )
    if cookie:
        with get_sessionmaker(request)() as session:
            ui_sessions.end(session, cookie)
            session.commit()
    response = RedirectResponse("/ui/adapters", status_code=303)
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )
    return finish(request, response)
