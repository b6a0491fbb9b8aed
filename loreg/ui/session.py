"""The browser's session: the cookie, the signed-in principal, CSRF tokens and forms.

``POST /ui/login`` (``loreg.ui.sign_in``) starts a server-side session
(``loreg.services.ui_sessions``): the ``loreg_ui`` cookie holds a random session id, never
the token. The cookie is ``HttpOnly``, ``SameSite=Lax``, ``Path=/ui``, and ``Secure`` when
the request came over https (``request.url.scheme``; behind a TLS-terminating proxy, run
uvicorn with ``--proxy-headers`` so the scheme is right). On plain ``http://127.0.0.1`` a
Secure cookie would not be sent back by browsers, hence the scheme test. Every request looks
the session up and re-checks its token, so signing out, or a revoked or expired token, signs
the browser out at once; the actor is then passed to the same service functions as the
API's, so what a page shows is exactly what the API would answer to that token.

CSRF. Forms that change state (sign out, cancel a job) carry ``csrf``: an HMAC-SHA256 of
a fixed label keyed by the session cookie's value, which another site can neither read
(HttpOnly, same-origin policy) nor compute. State-changing POSTs also refuse a foreign
``Origin`` header, and the Lax cookie is not sent on cross-site POSTs at all.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, Request

from loreg.api.deps import get_request_id, get_sessionmaker, note_use
from loreg.errors import InvalidInput, LoregError
from loreg.services import ui_sessions
from loreg.services.permissions import Principal

COOKIE = "loreg_ui"
COOKIE_PATH = "/ui"
MAX_FORM_BYTES = 16 * 1024
_CSRF_LABEL = b"loreg-ui-csrf-v1"


def csrf_token(cookie_value: str) -> str:
    """The form token of a session: HMAC-SHA256(key=cookie value, msg=fixed label)."""
    return hmac.new(cookie_value.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(request: Request, form: dict[str, str], cookie: str) -> bool:
    """Whether a state-changing form came from this site with this session's token."""
    return same_origin(request) and hmac.compare_digest(form.get("csrf", ""), csrf_token(cookie))


def ui_actor(request: Request) -> Principal | None:
    """The signed-in principal from the cookie, or ``None`` (a bad cookie signs out)."""
    request.state.ui_actor = None
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        principal = _session_principal(request, value)
    except LoregError:
        request.state.ui_clear_cookie = True
        return None
    request.state.ui_actor = principal
    return principal


def _session_principal(request: Request, value: str) -> Principal:
    """The principal of the cookie's session, in its own short read; the token's last use
    is noted like a Bearer request's (written off the request path)."""
    with get_sessionmaker(request)() as session:
        principal = ui_sessions.authenticate(session, value)
    note_use(request, principal)
    return principal.with_request_id(get_request_id(request) or None)


UiActor = Annotated[Principal | None, Depends(ui_actor)]


async def form_data(request: Request) -> dict[str, str]:
    """A small urlencoded form body (first value of each field)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidInput("form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("invalid form") from None
    return {k: v[0] for k, v in parsed.items()}


FormDep = Annotated[dict[str, str], Depends(form_data)]


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def safe_next(value: str | None) -> str:
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/adapters"
