"""Base models over HTTP: register (idempotent, conflicts, files), list/search, show."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories.pushes import base_body, register_base
from tests.factories.tiny_models import TinyModel, make_gpt2, make_llama
from tests.fixtures.api import RegistryServer, unique_name


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    root: Path = tmp_path_factory.mktemp("bases")
    return {
        "llama": make_llama(root / "llama"),
        "gpt2": make_gpt2(root / "gpt2"),
        "llama2": make_llama(root / "llama2", seed=1),
    }


def test_register_show_list(registry_server: RegistryServer, tiny: dict[str, TinyModel]) -> None:
    client = registry_server.client(registry_server.make_user().token)
    name = f"Org-{unique_name('x')}/Tiny.Llama_v1"  # HF repo-id form, case kept
    r = register_base(client, tiny["llama"], name, with_files=True)
    assert r.status_code == 201, r.text
    b = r.json()
    body = base_body(tiny["llama"], name)
    assert b["name"] == name and b["fingerprint"] == body["fingerprint"]
    assert b["structure_hash"] == body["structure_hash"] and b["has_weights"] is True
    assert b["num_tensors"] == len(body["tensors"]) and b["files"]
    # show, by a name containing a slash
    shown = client.get(f"/bases/{name}")
    assert shown.status_code == 200 and shown.json()["tensors"] == body["tensors"]
    # idempotent re-registration
    assert register_base(client, tiny["llama"], name).status_code == 200
    # same name, other weights: conflict
    r = register_base(client, tiny["llama2"], name)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    # list and search by name, case-insensitively, with pagination
    register_base(client, tiny["gpt2"], f"gpt/{unique_name('g')}")
    names = [x["name"] for x in client.get("/bases", params={"q": "tiny.llama"}).json()["bases"]]
    assert names == [name]
    page = client.get("/bases", params={"limit": 1}).json()
    assert len(page["bases"]) == 1 and page["next_cursor"]
    rest = client.get("/bases", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert rest["bases"][0]["name"] != page["bases"][0]["name"]
    # anyone may read the catalogue
    anon = registry_server.client(None)
    assert anon.get(f"/bases/{name}").status_code == 200
    assert anon.get("/bases/no/such").status_code == 404


def test_bad_registrations(registry_server: RegistryServer, tiny: dict[str, TinyModel]) -> None:
    user = registry_server.make_user()
    client = registry_server.client(user.token)
    body = base_body(tiny["llama"], "ok/name")
    for bad in ("a/b/c", "../x", "a/..", "", "x" * 300, "a b", "a/-"):
        r = client.post("/bases", json={**body, "name": bad})
        assert r.status_code == 400, (bad, r.text)
    r = client.post("/bases", json={**body, "structure_hash": "sha256:" + "0" * 64})
    assert r.status_code == 400
    first = next(iter(body["tensors"]))
    r = client.post("/bases", json={**body, "tensors": {first: {"dtype": "F99", "shape": [1]}}})
    assert r.status_code == 400
    r = client.post(
        "/bases",
        json={
            **body,
            "files": [{"path": "model.safetensors", "digest": "sha256:" + "cd" * 32, "size": 1}],
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "blob_unknown"
    assert (
        client.post(
            "/bases", content=b"[", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert registry_server.client(None).post("/bases", json=body).status_code == 401
    reader = registry_server.client(registry_server.make_user(scope="read").token)
    assert reader.post("/bases", json=body).status_code == 403
    assert client.get("/bases/ok/name").status_code == 404  # nothing was registered
