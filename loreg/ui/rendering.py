"""Rendering a page: the templates, the headers every page gets, and the error pages.

No page answers 500 for a malformed or unknown id: lookups that fail (missing, hidden, or
not even a valid name) render the friendly 404 page; other domain errors render an error
page with the status the API would use (``loreg.api.errors``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import DataError
from starlette.templating import Jinja2Templates

from loreg.api.errors import status_for
from loreg.errors import InvalidInput, LoregError, NotFound, Unauthenticated
from loreg.services.permissions import Principal
from loreg.ui.formatting import (
    human_count,
    human_size,
    pretty_json,
    short_digest,
    targets_text,
    when,
)
from loreg.ui.session import COOKIE, COOKIE_PATH, csrf_token

_HERE = Path(__file__).parent


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_HERE / "templates")),
        autoescape=select_autoescape(["html", "xml"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=human_size,
        count=human_count,
        when=when,
        short=short_digest,
        pretty=pretty_json,
        targets=targets_text,
        q=lambda s: quote(str(s)),
    )
    return env


templates = Jinja2Templates(env=_environment())


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    actor: Principal | None = getattr(request.state, "ui_actor", None)
    cookie = request.cookies.get(COOKIE)
    ctx: dict[str, Any] = {
        "actor": actor,
        "csrf": csrf_token(cookie) if cookie and actor else "",
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    return finish(request, response)


def finish(request: Request, response: Response) -> Response:
    if getattr(request.state, "ui_clear_cookie", False):
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(
        request, "error.html", {"title": title, "message": message, "status": status}, status=status
    )


def not_found(request: Request, what: str = "page") -> Response:
    return error_page(
        request, 404, "Not found", f"There is no {what} here, or you are not allowed to see it."
    )


def login_redirect(request: Request) -> Response:
    target = "/ui/login?" + urlencode({"next": request.url.path})
    return finish(request, RedirectResponse(target, status_code=303))


P = ParamSpec("P")
R = TypeVar("R")


def friendly(what: str) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """Turn domain errors of a page into pages: lookups -> 404, sign-in needed -> login."""

    def wrap(fn: Callable[P, Response]) -> Callable[P, Response]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> Response:
            request = kwargs["request"]
            assert isinstance(request, Request)
            try:
                return fn(*args, **kwargs)
            except Unauthenticated:
                return login_redirect(request)
            except (NotFound, InvalidInput):
                return not_found(request, what)
            except LoregError as exc:
                return error_page(request, status_for(exc), "Not possible", exc.message)
            except DataError:
                return not_found(request, what)

        return inner

    return wrap
