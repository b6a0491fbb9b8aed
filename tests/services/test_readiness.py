"""Readiness: each dependency reported on its own, and a down one named, never raised."""

from __future__ import annotations

import shutil
from pathlib import Path

from loreg.db import create_engine_for
from loreg.services import readiness
from loreg.storage.local import LocalBlobStore
from tests.fixtures.postgres import free_port


def test_each_dependency_is_checked_on_its_own(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    engine = create_engine_for(f"sqlite:///{tmp_path / 'ok.db'}")
    assert readiness.check(engine, store) == {"database": "ok", "store": "ok"}

    down = create_engine_for(f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/none")
    shutil.rmtree(tmp_path / "blobs")
    (tmp_path / "blobs").write_text("a file where the folder was")
    checks = readiness.check(down, store)
    assert checks["database"].startswith("unavailable: ")
    assert checks["store"].startswith("unavailable: ")
    engine.dispose()
    down.dispose()
