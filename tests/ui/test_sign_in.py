"""Signing in and out of the web page: the session cookie's flags, CSRF, refusals."""

from __future__ import annotations

import httpx

from loreg.ui.session import COOKIE, csrf_token
from tests.factories.ui_world import World, page_html


def test_login_cookie_flags_and_logout(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url, timeout=30) as ui:
        r = ui.post("/ui/login", data={"token": world.member.token, "next": "/ui/jobs"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
        assert {"httponly", "path"} <= flags and "secure" not in flags  # plain http
        assert "samesite=lax" in cookie.lower() and "path=/ui" in cookie.lower()
        page = page_html(ui.get("/ui/adapters"))
        assert world.member.name in page and "Sign out" in page
        # the cookie holds a random session id, never the token
        session_id = ui.cookies[COOKIE]
        assert session_id.startswith("lrs_") and world.member.token not in cookie
        # sign out needs the session's CSRF token
        r = ui.post("/ui/logout", data={"csrf": "forged"})
        assert r.status_code == 403
        assert world.member.name in ui.get("/ui/adapters").text
        r = ui.post("/ui/logout", data={"csrf": csrf_token(session_id)})
        assert r.status_code == 303
        assert f"{COOKIE}=" in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
        assert COOKIE not in ui.cookies
        assert "Sign in" in ui.get("/ui/adapters").text
    # signing out revoked the session on the server: a copy of the cookie is worthless
    with httpx.Client(
        base_url=world.server.base_url, timeout=30, cookies={COOKIE: session_id}
    ) as replay:
        r = replay.get("/ui/adapters")
        assert "Sign in" in page_html(r) and world.member.name not in r.text
        assert replay.get(f"/ui/adapters/{world.secret}").status_code == 404
    # and the API token the browser signed in with still works for the API
    assert world.server.client(world.member.token).get("/whoami").status_code == 200
    # over https (as a TLS-terminating proxy on loopback reports it) the cookie is Secure
    r = httpx.post(
        world.server.url("/ui/login"),
        data={"token": world.member.token},
        headers={"X-Forwarded-Proto": "https"},
        timeout=30,
    )
    assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()


def test_login_refusals(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url, timeout=30) as ui:
        r = ui.post("/ui/login", data={"token": "lrg_not-a-token"})
        assert "not valid" in page_html(r, 401) and "set-cookie" not in r.headers
        r = ui.post("/ui/login", data={"token": ""})
        assert r.status_code == 401
        r = ui.post(
            "/ui/login",
            data={"token": world.member.token},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = ui.post("/ui/login", data={"token": world.member.token, "next": "//evil.example/"})
        assert r.headers["location"] == "/ui/adapters"
    # a cookie whose token was revoked signs the browser out (and is cleared)
    extra = world.server.make_token(world.owner, scope="read")
    with httpx.Client(base_url=world.server.base_url, timeout=30) as ui:
        assert ui.post("/ui/login", data={"token": extra.token}).status_code == 303
        r = world.server.client(world.owner.token).delete(f"/tokens/{extra.token_id}")
        assert r.status_code in (200, 204), r.text
        r = ui.get("/ui/adapters")
        assert "Sign in" in page_html(r) and "Max-Age=0" in r.headers.get("set-cookie", "")
