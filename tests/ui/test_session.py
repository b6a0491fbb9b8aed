"""The browser session's pieces: CSRF tokens, same-origin checks, redirects, small forms."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest
from starlette.requests import Request

from loreg.errors import InvalidInput
from loreg.ui.session import MAX_FORM_BYTES, csrf_ok, csrf_token, form_data, safe_next, same_origin


def _request(headers: dict[str, str] | None = None, body: bytes = b"") -> Request:
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive() -> dict[str, object]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/ui/logout",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    return Request(scope, receive)


def test_the_csrf_token_is_an_hmac_of_the_session_cookie() -> None:
    token = csrf_token("lrs_abc")
    assert token == hmac.new(b"lrs_abc", b"loreg-ui-csrf-v1", hashlib.sha256).hexdigest()
    assert token != csrf_token("lrs_abd") and token == csrf_token("lrs_abc")


@pytest.mark.parametrize(
    ("origin", "same"),
    [
        (None, True),  # no Origin header: a same-site form post in browsers that omit it
        ("http://registry.example:8080", True),
        ("https://evil.example", False),
        ("null", False),
    ],
)
def test_same_origin(origin: str | None, same: bool) -> None:
    headers = {"host": "registry.example:8080"}
    if origin is not None:
        headers["origin"] = origin
    assert same_origin(_request(headers)) is same


def test_csrf_ok_needs_both_the_origin_and_the_token() -> None:
    here = {"host": "registry.example"}
    token = csrf_token("lrs_x")
    assert csrf_ok(_request(here), {"csrf": token}, "lrs_x")
    assert not csrf_ok(_request(here), {"csrf": "forged"}, "lrs_x")
    assert not csrf_ok(_request(here), {}, "lrs_x")
    evil = {**here, "origin": "https://evil.example"}
    assert not csrf_ok(_request(evil), {"csrf": token}, "lrs_x")


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("/ui/jobs", "/ui/jobs"),
        ("/ui/adapters?namespace=acme", "/ui/adapters?namespace=acme"),
        (None, "/ui/adapters"),
        ("//evil.example/ui/", "/ui/adapters"),
        ("https://evil.example/ui/", "/ui/adapters"),
        ("/ui/\\evil", "/ui/adapters"),
        ("/api/v1/tokens", "/ui/adapters"),
    ],
)
def test_safe_next_stays_on_the_ui(given: str | None, target: str) -> None:
    assert safe_next(given) == target


def test_form_data_takes_the_first_value_and_refuses_large_or_broken_forms() -> None:
    form = asyncio.run(form_data(_request(body=b"csrf=abc&next=%2Fui%2Fjobs&csrf=other&empty=")))
    assert form == {"csrf": "abc", "next": "/ui/jobs", "empty": ""}
    with pytest.raises(InvalidInput, match="too large"):
        asyncio.run(form_data(_request(body=b"x=" + b"a" * MAX_FORM_BYTES)))
    with pytest.raises(InvalidInput, match="invalid form"):
        asyncio.run(form_data(_request(body=b"\xff\xfe=1")))
