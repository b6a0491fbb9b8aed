from __future__ import annotations

import httpx
import pytest

from loreg.client import errors


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.InvalidInput),
        (401, errors.Unauthenticated),
        (403, errors.PermissionDenied),
        (404, errors.NotFound),
        (409, errors.Conflict),
        (413, errors.TooLarge),
        (422, errors.Incompatible),
        (503, errors.ServerError),
        (418, errors.ApiError),
    ],
)
def test_status_picks_the_class_and_keeps_the_server_code(status: int, cls: type) -> None:
    req = httpx.Request("GET", "http://x/api/v1/adapters/a/b")
    body = {"error": {"code": "special_code", "message": "nope", "details": {"k": 1}}}
    exc = errors.ApiError.from_response(httpx.Response(status, json=body, request=req))
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.details, exc.status) == (
        "special_code",
        "nope",
        {"k": 1},
        status,
    )
    assert exc.to_dict() == body


def test_a_body_that_is_not_the_error_shape_still_gives_a_message() -> None:
    req = httpx.Request("GET", "http://x/api/v1/blobs/x")
    exc = errors.ApiError.from_response(
        httpx.Response(502, text="<html>bad gateway</html>", request=req)
    )
    assert isinstance(exc, errors.ServerError)
    assert exc.code == "server_error"
    assert "502" in exc.message and "bad gateway" in exc.message
