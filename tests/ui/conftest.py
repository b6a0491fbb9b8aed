"""Fixtures for the UI tests: the tiny models and the small registry world
(tests/factories/ui_world.py) they run in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories.pushes import Models, build_models
from tests.factories.ui_world import World, build_world
from tests.fixtures.api import RegistryServer


@pytest.fixture(scope="session")
def ui_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("ui-models"))


@pytest.fixture
def world(registry_server: RegistryServer, ui_models: Models, tmp_path: Path) -> World:
    return build_world(registry_server, ui_models, tmp_path / "variants")
