"""Tags over HTTP: set, move, pin and unpin latest, protected tags, concurrent moves."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.factories.pushes import Models, build_models, push, register_base
from tests.fixtures.api import RegistryServer, unique_name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def adapter(registry_server: RegistryServer, models: Models) -> dict[str, Any]:
    """``{org}/tagged`` with versions 1 and 2, pushed by the org's admin."""
    owner = registry_server.make_user(scope="admin")
    org = registry_server.make_org(owner)
    client = registry_server.client(owner.token)
    base = f"t/{unique_name('B')}"
    assert register_base(client, models.base, base).status_code == 201
    assert push(client, models.adapter.path, f"{org}/tagged", base=base).status_code == 201
    assert push(client, models.adapter_r8.path, f"{org}/tagged", base=base).status_code == 201
    writer = registry_server.make_user()
    registry_server.add_member(org, writer, "write")
    return {
        "org": org,
        "owner": client,
        "writer": registry_server.client(writer.token),
        "writer_token": writer.token,
        "base": base,
    }


def tags(client: httpx.Client, org: str) -> dict[str, int]:
    r = client.get(f"/adapters/{org}/tagged/tags")
    assert r.status_code == 200, r.text
    return {t["name"]: t["number"] for t in r.json()["tags"]}


def test_set_move_delete(adapter: dict[str, Any], models: Models) -> None:
    org, w = adapter["org"], adapter["writer"]
    assert tags(w, org) == {"latest": 2}
    r = w.put(f"/adapters/{org}/tagged/tags/prod", json={"version": 1})
    assert r.status_code == 200 and r.json()["number"] == 1 and not r.json()["automatic"]
    digest2 = w.get(f"/adapters/{org}/tagged/versions/2").json()["digest"]
    r = w.put(f"/adapters/{org}/tagged/tags/prod", json={"version": digest2})
    assert r.json()["number"] == 2
    assert w.get("/resolve", params={"ref": f"{org}/tagged:prod"}).json()["number"] == 2
    assert w.put(f"/adapters/{org}/tagged/tags/prod", json={"version": 9}).status_code == 404
    assert w.put(f"/adapters/{org}/tagged/tags/Bad..Tag", json={"version": 1}).status_code == 400
    assert w.delete(f"/adapters/{org}/tagged/tags/prod").status_code == 204
    assert w.delete(f"/adapters/{org}/tagged/tags/prod").status_code == 404
    assert w.get("/resolve", params={"ref": f"{org}/tagged:prod"}).status_code == 404


def test_latest_pin_and_unpin(adapter: dict[str, Any], models: Models, tmp_path: Any) -> None:
    org, w, base = adapter["org"], adapter["writer"], adapter["base"]
    # pin latest to 1: a new push does not move it
    assert w.put(f"/adapters/{org}/tagged/tags/latest", json={"version": 1}).status_code == 200
    v3 = push(w, models.variant(tmp_path, 3).path, f"{org}/tagged", base=base)
    assert v3.status_code == 201 and v3.json()["number"] == 3
    assert tags(w, org)["latest"] == 1
    assert w.get("/resolve", params={"ref": f"{org}/tagged"}).json()["number"] == 1
    # unpin: ns/name resolves to the newest again, and the next push follows
    assert w.delete(f"/adapters/{org}/tagged/tags/latest").status_code == 204
    assert w.get("/resolve", params={"ref": f"{org}/tagged"}).json()["number"] == 3
    push(w, models.variant(tmp_path, 4).path, f"{org}/tagged", base=base)
    assert tags(w, org)["latest"] == 4


def test_protected_tags_need_namespace_admin(adapter: dict[str, Any]) -> None:
    org, owner, w = adapter["org"], adapter["owner"], adapter["writer"]
    r = w.put(f"/adapters/{org}/tagged/tags/stable", json={"version": 1, "protected": True})
    assert r.status_code == 403
    r = owner.put(f"/adapters/{org}/tagged/tags/stable", json={"version": 1, "protected": True})
    assert r.status_code == 200 and r.json()["protected"] is True
    assert w.put(f"/adapters/{org}/tagged/tags/stable", json={"version": 2}).status_code == 403
    assert w.delete(f"/adapters/{org}/tagged/tags/stable").status_code == 403
    assert w.delete(f"/adapters/{org}/tagged/versions/1", params={"reason": "x"}).status_code == 403
    assert owner.put(f"/adapters/{org}/tagged/tags/stable", json={"version": 2}).status_code == 200
    assert tags(w, org)["stable"] == 2


def test_concurrent_moves_leave_the_tag_on_one(
    adapter: dict[str, Any], registry_server: RegistryServer
) -> None:
    org, token = adapter["org"], adapter["writer_token"]
    for _round in range(3):
        barrier = threading.Barrier(2)
        codes: list[int] = []

        def move(
            version: int, barrier: threading.Barrier = barrier, codes: list[int] = codes
        ) -> None:
            with httpx.Client(
                base_url=registry_server.api_url,
                timeout=60,
                headers={"Authorization": f"Bearer {token}"},
            ) as c:
                barrier.wait()
                codes.append(
                    c.put(
                        f"/adapters/{org}/tagged/tags/race", json={"version": version}
                    ).status_code
                )

        threads = [threading.Thread(target=move, args=(v,)) for v in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200, 200]
        assert tags(adapter["writer"], org)["race"] in (1, 2)
        listed = adapter["writer"].get(f"/adapters/{org}/tagged/tags").json()["tags"]
        assert [t["name"] for t in listed].count("race") == 1
