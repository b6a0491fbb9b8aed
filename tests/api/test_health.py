"""Probes: /healthz always, /readyz when the database and the store answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from loreg.config import Settings
from tests.fixtures.api import RegistryServer, start_registry
from tests.fixtures.postgres import free_port


def test_healthz(registry_server: RegistryServer) -> None:
    r = registry_server.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]


def test_readyz_ok(registry_server: RegistryServer) -> None:
    r = registry_server.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "store": "ok"}}


@pytest.mark.slow
def test_readyz_503_when_s3_is_down(tmp_path: Path, postgres_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        home=tmp_path,
        database_url=postgres_url,
        storage_url="s3://nowhere/x",
        s3_endpoint_url=dead,
        s3_region="us-east-1",
    )
    with start_registry(settings) as server:
        assert server.get("/healthz").status_code == 200
        r = server.get("/readyz")
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "unavailable"
        assert error["details"]["database"] == "ok"
        assert error["details"]["store"].startswith("unavailable")
        # the API itself keeps answering what needs no store
        assert server.admin.get("/whoami").status_code == 200


def test_readyz_503_when_database_is_down(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=None, storage_url=None)
    with start_registry(settings) as server:
        server.app.state.engine.dispose()
        db = tmp_path / "loreg.db"
        # make the database unreadable: replace the file with a directory
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        db.mkdir()
        r = server.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["details"]["database"].startswith("unavailable")
        assert r.json()["error"]["details"]["store"] == "ok"
