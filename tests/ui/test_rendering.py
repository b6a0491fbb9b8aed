"""Rendering: every page gets the same safety headers, and domain errors become pages."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError

from loreg.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from loreg.ui.rendering import error_page, friendly
from loreg.ui.session import COOKIE

ERRORS: dict[str, Exception] = {
    "missing": NotFound("no such thing"),
    "malformed": InvalidInput("not a name"),
    "signed-out": Unauthenticated("sign in"),
    "conflict": Conflict("it is in use"),
    "database": DataError("SELECT", {}, Exception("value out of range")),
}


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ui/things/{what}")
    @friendly("thing")
    def thing(request: Request, what: str) -> Response:
        if what in ERRORS:
            raise ERRORS[what]
        request.state.ui_clear_cookie = what == "stale-cookie"
        return error_page(request, 418, "A page", f"about {what}")

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app(), follow_redirects=False)


def test_every_page_gets_the_safety_headers(client: TestClient) -> None:
    r = client.get("/ui/things/teapot")
    assert r.status_code == 418 and "about teapot" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    assert "set-cookie" not in r.headers


def test_a_stale_cookie_is_cleared(client: TestClient) -> None:
    r = client.get("/ui/things/stale-cookie")
    assert f"{COOKIE}=" in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]


@pytest.mark.parametrize("what", ["missing", "malformed", "database"])
def test_lookups_that_fail_are_the_friendly_404(client: TestClient, what: str) -> None:
    r = client.get(f"/ui/things/{what}")
    assert r.status_code == 404
    assert "There is no thing here, or you are not allowed to see it." in r.text
    assert r.headers["x-frame-options"] == "DENY"


def test_signed_out_goes_to_sign_in_and_back(client: TestClient) -> None:
    r = client.get("/ui/things/signed-out")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fthings%2Fsigned-out"


def test_other_domain_errors_get_the_api_status(client: TestClient) -> None:
    r = client.get("/ui/things/conflict")
    assert r.status_code == 409 and "Not possible" in r.text and "it is in use" in r.text
