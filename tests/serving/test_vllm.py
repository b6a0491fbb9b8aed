"""The vLLM resolver plugin's logic against a live registry (no GPU, no vLLM needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from loreg.client import Client
from loreg.serving.vllm import AdapterResolver, BaseMismatch, ResolverError, register
from tests.factories.hub import publishable, register_named_base, tree_digests
from tests.factories.pushes import Models, build_models, push
from tests.fixtures.api import RegistryServer, unique_name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def world(registry_server: RegistryServer, models: Models, tmp_path: Path) -> dict:
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    other = register_named_base(registry_server, models.other_base)
    folder = publishable(models.adapter.path, tmp_path / "a", base)
    repo = f"{alice.name}/{unique_name('ad')}"
    assert push(registry_server.client(alice.token), folder, repo).status_code == 201
    reader = registry_server.make_token(alice, scope="read")
    client = Client(registry_server.base_url, reader.token, home=tmp_path / "client")
    return {
        "repo": repo,
        "base": base,
        "other": other,
        "folder": folder,
        "client": client,
        "cache": tmp_path / "cache",
    }


def test_matching_base_is_downloaded_once(world: dict) -> None:
    resolver = AdapterResolver(world["client"], world["cache"])
    first = resolver.resolve(world["base"], world["repo"])
    assert first is not None and first.ref == f"{world['repo']}@1"
    assert tree_digests(first.path) == tree_digests(world["folder"])
    again = resolver.resolve(world["base"], f"{world['repo']}:latest")
    assert again is not None and again.path == first.path and again.int_id == first.int_id
    assert resolver.downloads == 1
    # a new resolver (a restarted server) finds the cache on disk
    restarted = AdapterResolver(world["client"], world["cache"])
    assert restarted.resolve(world["base"], world["repo"]) == first
    assert restarted.downloads == 0


def test_other_base_is_refused(world: dict) -> None:
    resolver = AdapterResolver(world["client"], world["cache"])
    with pytest.raises(BaseMismatch) as exc:
        resolver.resolve(world["other"], world["repo"])
    assert world["base"] in str(exc.value) and world["other"] in str(exc.value)
    assert not world["cache"].exists() or not any(world["cache"].iterdir())
    # the served name can differ from the registered one: LOREG_VLLM_BASE says which it is
    renamed = AdapterResolver(world["client"], world["cache"], base=world["base"])
    assert renamed.resolve("/models/served-under-a-path", world["repo"]) is not None


def test_unknown_adapter_and_unregistered_base(world: dict) -> None:
    resolver = AdapterResolver(world["client"], world["cache"])
    assert resolver.resolve(world["base"], f"{world['repo']}-missing") is None
    with pytest.raises(ResolverError) as exc:
        resolver.resolve("acme/not-registered", world["repo"])
    assert "not a registered base model" in str(exc.value)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_register_without_vllm_is_a_no_op() -> None:
    assert register() is False
