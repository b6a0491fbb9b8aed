"""One error shape for everything: domain errors, validation, routing, the unexpected;
a database outage is a 503 with ``Retry-After``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loreg.api.app import create_app
from loreg.api.errors import RETRY_AFTER_SECONDS, STATUS_BY_ERROR, status_for
from loreg.config import Settings
from loreg.db import migrate
from loreg.errors import (
    Conflict,
    Incompatible,
    InvalidInput,
    LoregError,
    NotFound,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from loreg.storage import BlobTooLarge, DigestMismatch, StorageUnavailable
from tests.fixtures.api import RegistryServer, start_registry
from tests.fixtures.postgres import PgCluster
from tests.fixtures.s3 import S3Endpoint


def _assert_shape(body: object, code: str | None = None) -> dict[str, Any]:
    assert isinstance(body, dict) and set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidInput("x"), 400),
        (Unauthenticated("x"), 401),
        (PermissionDenied("x"), 403),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (TooLarge("x"), 413),
        (Incompatible("x"), 422),
        (Unavailable("x"), 503),
        # subclasses keep their parent's status and their own code
        (DigestMismatch("x"), 400),
        (BlobTooLarge("x"), 413),
        (StorageUnavailable("x"), 503),
        (LoregError("x"), 400),
    ],
)
def test_status_mapping(exc: LoregError, status: int) -> None:
    assert status_for(exc) == status


def test_every_error_class_is_mapped() -> None:
    assert set(STATUS_BY_ERROR) == {
        InvalidInput,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        Conflict,
        TooLarge,
        Incompatible,
        Unavailable,
    }


def test_malformed_json(registry_server: RegistryServer) -> None:
    r = registry_server.admin.post(
        "/orgs", content=b'{"name": "x"', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    error = _assert_shape(r.json(), "invalid_input")
    assert error["message"] == "request body is not valid JSON"
    r = registry_server.admin.post(
        "/orgs", content=b"\xff\xfe\x00garbage", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    _assert_shape(r.json(), "invalid_input")
    r = registry_server.admin.post("/orgs", json=["not", "an", "object"])
    assert r.status_code == 400
    r = registry_server.admin.post("/orgs", json={})
    assert r.status_code == 400
    error = _assert_shape(r.json(), "invalid_input")
    assert error["details"][0]["loc"] == ["body", "name"]


BAD_NAMES = ["a..b", "..", "Upper", "a/b", "x" * 500, "", "-lead", "a b", "é", "a\nb", 7, None]


def test_bad_names_are_400(registry_server: RegistryServer) -> None:
    for name in BAD_NAMES:
        for path, body in (
            ("/orgs", {"name": name}),
            ("/users", {"name": name}),
            ("/tokens", {"name": name}),
        ):
            r = registry_server.admin.post(path, json=body)
            assert r.status_code == 400, (path, name, r.text)
            _assert_shape(r.json(), "invalid_input")
    # nothing was created
    assert registry_server.admin.get("/whoami").json()["orgs"] == []


def test_bad_names_in_paths_are_4xx(registry_server: RegistryServer) -> None:
    for path in [
        "/orgs/a..b",
        "/orgs/Upper",
        "/orgs/" + "x" * 500,
        "/orgs/a%2Fb",
        "/orgs/%2e%2e",
        "/orgs/a..b/members/x",
    ]:
        r = registry_server.admin.get(path)
        assert r.status_code in (400, 404, 405), r.text
        _assert_shape(r.json())
    r = registry_server.admin.delete("/orgs/x/members/a..b")
    assert r.status_code == 400


def test_routing_errors_have_the_shape(registry_server: RegistryServer) -> None:
    r = registry_server.admin.get("/no/such/route")
    assert r.status_code == 404
    _assert_shape(r.json(), "not_found")
    r = registry_server.admin.put("/whoami")
    assert r.status_code == 405
    _assert_shape(r.json(), "method_not_allowed")
    r = registry_server.admin.delete("/tokens/not-a-number")
    assert r.status_code == 400
    _assert_shape(r.json(), "invalid_input")
    r = registry_server.admin.delete("/tokens/99999999999999999999999")
    assert r.status_code == 400


def test_request_id_echoed_or_generated(registry_server: RegistryServer) -> None:
    r = registry_server.admin.get("/whoami", headers={"X-Request-ID": "ci-run-42.step:7"})
    assert r.headers["x-request-id"] == "ci-run-42.step:7"
    generated = registry_server.admin.get("/whoami").headers["x-request-id"]
    assert len(generated) == 32
    # an id that could break logs or headers is replaced, not echoed
    r = registry_server.admin.get("/whoami", headers={"X-Request-ID": "x" * 200})
    assert r.headers["x-request-id"] != "x" * 200
    # error answers carry it too
    r = registry_server.client(None).get("/whoami", headers={"X-Request-ID": "abc"})
    assert r.status_code == 401 and r.headers["x-request-id"] == "abc"


def test_unexpected_errors_are_generic_500s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path, database_url=None, storage_url=None)
    migrate.upgrade(settings.effective_database_url)
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    with (
        TestClient(app, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="loreg.api"),
    ):
        r = client.get("/boom", headers={"X-Request-ID": "trace-me"})
    assert r.status_code == 500
    error = _assert_shape(r.json(), "internal_error")
    assert error["details"] == {"request_id": "trace-me"}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] == "trace-me"
    assert any("trace-me" in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_nul_bytes_are_refused_not_500(registry_server: RegistryServer) -> None:
    """PostgreSQL refuses NUL in text: the API must say 400, not fail."""
    r = registry_server.admin.post("/orgs", json={"name": "nul-org", "description": "a\x00b"})
    assert r.status_code == 400, r.text
    _assert_shape(r.json(), "invalid_input")
    for key in ("action", "target", "target_type", "actor"):
        r = registry_server.admin.get("/audit", params={key: "x\x00y"})
        assert r.status_code == 400, (key, r.text)
    r = registry_server.admin.post("/users", json={"name": "nul-user", "email": "a\x00@b"})
    assert r.status_code == 400, r.text


@pytest.mark.slow
def test_database_outage_is_503_with_retry_after_then_recovers(
    tmp_path: Path, pg_cluster: PgCluster, s3_bucket: S3Endpoint
) -> None:
    """PostgreSQL stopped under a running API: every answer that needs it is a 503 with
    ``Retry-After`` (never a 500), and the API serves again by itself once it is back."""
    settings = Settings(
        home=tmp_path,
        database_url=pg_cluster.create_database(),
        storage_url=f"s3://{s3_bucket.bucket}/loreg",
        s3_endpoint_url=s3_bucket.endpoint_url,
        s3_region="us-east-1",
    )
    with start_registry(settings) as server:
        api = server.admin
        assert api.get("/whoami").status_code == 200
        pg_cluster.stop()
        try:
            for path in ("/whoami", "/adapters", "/jobs"):
                r = api.get(path)
                assert r.status_code == 503, (path, r.text)
                _assert_shape(r.json(), "unavailable")
                assert r.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            r = server.get("/readyz")
            assert r.status_code == 503 and r.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            assert server.get("/healthz").status_code == 200  # alive: do not restart it
        finally:
            pg_cluster.start()
        assert api.get("/whoami").status_code == 200
        assert server.get("/readyz").status_code == 200
