"""Adapters over HTTP: visibility and description changes, search pagination, audit trail."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories.pushes import Models, build_models, push, register_base
from tests.fixtures.api import RegistryServer, unique_name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


def test_visibility_search_pages_and_audit(
    registry_server: RegistryServer, models: Models, tmp_path: Any
) -> None:
    owner = registry_server.make_user(scope="admin")
    client = registry_server.client(owner.token)
    base = f"t/{unique_name('B')}"
    assert register_base(client, models.base, base).status_code == 201
    ns = owner.name  # a user's own namespace
    for i in range(3):
        r = push(
            client,
            models.variant(tmp_path, i).path,
            f"{ns}/a{i}",
            base=base,
            description=f"adapter number {i}",
        )
        assert r.status_code == 201, r.text

    # pagination: newest first, opaque cursor, no duplicates
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"namespace": ns, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/adapters", params=params).json()
        seen += [a["name"] for a in page["adapters"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["a2", "a1", "a0"]
    assert client.get("/adapters", params={"cursor": "garbage!"}).status_code == 400
    assert client.get("/adapters", params={"label": "nokey"}).status_code == 400
    assert client.get("/adapters", params={"limit": 0}).status_code == 400

    # private until made public; anonymous callers then see and pull it
    anon = registry_server.client(None)
    assert anon.get(f"/adapters/{ns}/a0").status_code == 404
    r = client.patch(f"/adapters/{ns}/a0", json={"public": True, "description": "now public"})
    assert r.status_code == 200 and r.json()["public"] is True
    assert r.json()["description"] == "now public"
    shown = anon.get(f"/adapters/{ns}/a0")
    assert shown.status_code == 200 and shown.json()["latest"]["number"] == 1
    assert [
        a["name"] for a in anon.get("/adapters", params={"namespace": ns}).json()["adapters"]
    ] == ["a0"]
    assert client.patch(f"/adapters/{ns}/a0", json={"public": "yes please"}).status_code == 400

    # every write is in the audit log, with the actor
    events = registry_server.admin.get("/audit", params={"actor": owner.name}).json()["events"]
    actions = {e["action"] for e in events}
    assert {
        "base.register",
        "blob.upload",
        "adapter.create",
        "version.push",
        "adapter.visibility",
        "adapter.update",
    } <= actions
    pushed = [e for e in events if e["action"] == "version.push"]
    assert {e["target"] for e in pushed} == {f"{ns}/a{i}@1" for i in range(3)}
    assert all(e["request_id"] for e in pushed)
