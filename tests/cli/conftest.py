"""Fixtures for the end-to-end CLI tests: real ``loreg serve`` / ``loreg worker`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.harness import LoregEnv
from tests.factories.cli_models import Models
from tests.factories.tiny_models import make_llama, make_lora_adapter

BACKENDS = ("embedded", "postgres+s3")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    base = make_llama(root / "base")
    return Models(
        base=base,
        adapter=make_lora_adapter(base, root / "adapter", seed=1),
        adapter2=make_lora_adapter(base, root / "adapter2", seed=2),
        wrong_base=make_llama(root / "wrong-base", hidden_size=64, intermediate_size=64),
    )


@pytest.fixture(params=BACKENDS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LoregEnv]:
    """A running registry: the embedded default (only LOREG_HOME set; the in-process worker),
    or PostgreSQL + S3 with ``serve --no-worker`` and a separate ``loreg worker``."""
    home = tmp_path / "home"
    # A merge takes ~2 s (0.1 s per tensor), so a test can cancel one while it runs.
    extra = {"LOREG_WORKER_POLL_SECONDS": "0.2", "LOREG_WORKER_TEST_DELAY_SECONDS": "0.1"}
    env = LoregEnv(home=home)
    if request.param == "postgres+s3":
        pg = request.getfixturevalue("postgres_url")
        s3 = request.getfixturevalue("s3_bucket")
        extra.update(
            {
                "LOREG_DATABASE_URL": pg,
                "LOREG_STORAGE_URL": f"s3://{s3.bucket}/loreg",
                "LOREG_S3_ENDPOINT_URL": s3.endpoint_url,
            }
        )
        env.extra = extra
        env.start_server(worker=False)
        env.start_worker()
    else:
        env.extra = extra
        env.start_server()
    yield env
    env.stop_all()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoregEnv]:
    """One embedded registry (``loreg serve``, only LOREG_HOME set) shared by a module's tests:
    for commands whose behaviour does not depend on the backend (it is the API's)."""
    env = LoregEnv(
        home=tmp_path_factory.mktemp("registry") / "home",
        extra={"LOREG_WORKER_POLL_SECONDS": "0.2"},
    )
    env.start_server()
    yield env
    env.stop_all()
