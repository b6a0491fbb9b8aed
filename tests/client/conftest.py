from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loreg.client import Client
from tests.client.fake_registry import FakeRegistry


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    yield server
    server.close()


@pytest.fixture
def client(fake: FakeRegistry, tmp_path: Path) -> Iterator[Client]:
    c = Client(fake.url, "lrg_secret", home=tmp_path / "home", retries=3, backoff=0.01)
    yield c
    c.close()


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    """A folder shaped like a PEFT adapter, with a multi-megabyte file so bodies stream."""
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text('{"r": 4}')
    (d / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 20_000)  # ~5 MB
    (d / "README.md").write_text("hello\n")
    return d
