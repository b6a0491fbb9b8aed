"""Fixtures for the storage tests: each store with a way to look behind its back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loreg.storage.base import BlobStore
from tests.factories.storage import Harness, local_harness, s3_harness


@pytest.fixture(params=["local", "s3"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        yield local_harness(tmp_path / "blobs")
    else:
        yield s3_harness(request.getfixturevalue("s3_bucket"))


@pytest.fixture
def store(harness: Harness) -> BlobStore:
    return harness.store
