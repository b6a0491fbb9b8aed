"""Push and pull over HTTP on both backends: real PEFT adapters, the three-call protocol,
byte-identical pulls, idempotent re-push, incompatibility reports, bad manifests, and
concurrent pushes getting consecutive numbers."""

from __future__ import annotations

import json
import struct
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories.pushes import (
    Models,
    adapter_with_tensors,
    build_models,
    folder_files,
    push,
    register_base,
    upload,
)
from tests.factories.tampered import UNKNOWN_OPTION, UNKNOWN_TENSOR, tamper
from tests.factories.tiny_models import make_lora_adapter
from tests.fixtures.api import RegistryServer, unique_name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def world(registry_server: RegistryServer, models: Models) -> dict[str, Any]:
    """A writer with an org, and both bases registered."""
    owner = registry_server.make_user()
    org = registry_server.make_org(owner)
    client = registry_server.client(owner.token)
    base = unique_name("Tiny-Llama")
    other = unique_name("Tiny-Llama-48")
    assert register_base(client, models.base, f"test/{base}").status_code == 201
    assert register_base(client, models.other_base, f"test/{other}").status_code == 201
    return {
        "owner": owner,
        "org": org,
        "client": client,
        "base": f"test/{base}",
        "other_base": f"test/{other}",
        "admin": registry_server.admin,
    }


def _pull(client: httpx.Client, version: dict[str, Any], dest: Path) -> None:
    """Pull every file of a version (following a 307 to the store without our token)."""
    dest.mkdir(parents=True)
    for f in version["files"]:
        r = client.get(f"/blobs/{f['digest']}")
        if r.status_code == 307:
            r = httpx.get(r.headers["location"], timeout=30)
        assert r.status_code == 200, r.text
        (dest / f["path"]).write_bytes(r.content)


def test_push_pull_roundtrip(
    world: dict[str, Any], models: Models, tmp_path: Path, registry_server: RegistryServer
) -> None:
    client, org = world["client"], world["org"]
    files = folder_files(models.adapter.path)
    assert {f["path"] for f in files} >= {"adapter_config.json", "adapter_model.safetensors"}

    # 1. upload check: everything missing; 2. blob puts; 3. version create
    missing = upload(client, models.adapter.path, files)
    assert sorted(missing) == sorted({f["digest"] for f in files})
    r = client.post(
        f"/adapters/{org}/tiny/versions",
        json={
            "files": files,
            "base": world["base"],
            "labels": {"dataset": "x"},
            "description": "a tiny adapter",
        },
    )
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["number"] == 1 and v["created"] is True
    assert v["digest"].startswith("sha256:")
    assert v["r"] == 4 and v["lora_alpha"] == 8 and v["peft_type"] == "LORA"
    assert sorted(v["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert v["base"] == world["base"] and v["validation_state"] == "pending"
    assert v["labels"] == {"dataset": "x"} and v["tags"] == ["latest"]
    assert v["dtype"] == "F32" and v["num_parameters"] > 0
    assert v["adapter_config"]["r"] == 4 and v["compatibility"]["compatible"] is True
    assert v["job_id"]
    peft_params = sum(p.numel() for n, p in models.adapter.model.named_parameters() if "lora_" in n)
    assert v["num_parameters"] == peft_params

    # pull it back byte-identical, by every reference form
    for ref in (f"{org}/tiny", f"{org}/tiny:latest", f"{org}/tiny@1", f"{org}/tiny@{v['digest']}"):
        r = client.get("/resolve", params={"ref": ref})
        assert r.status_code == 200, (ref, r.text)
        assert r.json()["digest"] == v["digest"]
    got = client.get(f"/adapters/{org}/tiny/versions/1").json()
    _pull(client, got, tmp_path / "pulled")
    for f in files:
        assert (tmp_path / "pulled" / f["path"]).read_bytes() == (
            models.adapter.path / f["path"]
        ).read_bytes()

    # PEFT loads the pulled folder
    from peft import LoraConfig, PeftModel

    from tests.factories.tiny_models import load_model

    loaded = PeftModel.from_pretrained(load_model(models.base.path), str(tmp_path / "pulled"))
    config = loaded.peft_config["default"]
    assert isinstance(config, LoraConfig) and config.r == 4

    # re-push: no upload needed, same version, no new number
    assert upload(client, models.adapter.path, files) == []
    r = client.post(f"/adapters/{org}/tiny/versions", json={"files": files, "base": world["base"]})
    assert r.status_code == 200, r.text
    assert r.json()["number"] == 1 and r.json()["created"] is False
    versions = client.get(f"/adapters/{org}/tiny/versions").json()["versions"]
    assert [x["number"] for x in versions] == [1]

    # search finds it by base and by target module; not by another target
    def found(**params: Any) -> list[str]:
        r = client.get("/adapters", params=params)
        assert r.status_code == 200, r.text
        return [f"{a['namespace']}/{a['name']}" for a in r.json()["adapters"]]

    assert f"{org}/tiny" in found(base=world["base"])
    assert f"{org}/tiny" in found(target="q_proj", namespace=org)
    assert f"{org}/tiny" not in found(target="gate_proj", namespace=org)
    assert f"{org}/tiny" not in found(base=world["other_base"])
    assert f"{org}/tiny" in found(label="dataset=x", rank_min=4, rank_max=4)
    assert f"{org}/tiny" not in found(rank_min=5)
    assert f"{org}/tiny" in found(text="TINY ADAPTER")

    # private by default: 404 for an outsider and anonymous, no search hit, no blob
    outsider = registry_server.client(registry_server.make_user().token)
    anon = registry_server.client(None)
    for c in (outsider, anon):
        assert c.get(f"/adapters/{org}/tiny").status_code == 404
        assert c.get("/resolve", params={"ref": f"{org}/tiny"}).status_code == 404
        assert f"{org}/tiny" not in [a["name"] for a in c.get("/adapters").json()["adapters"]]
        assert c.get(f"/blobs/{files[0]['digest']}").status_code == 404


def test_second_version_moves_latest(world: dict[str, Any], models: Models) -> None:
    client, org = world["client"], world["org"]
    assert push(client, models.adapter.path, f"{org}/a", base=world["base"]).status_code == 201
    r = push(client, models.adapter_r8.path, f"{org}/a", base=world["base"], tags=["prod"])
    assert r.status_code == 201, r.text
    assert r.json()["number"] == 2 and sorted(r.json()["tags"]) == ["latest", "prod"]
    assert r.json()["r"] == 8
    a = client.get(f"/adapters/{org}/a").json()
    assert a["latest"]["number"] == 2 and a["versions_count"] == 2
    assert a["tags"] == {"latest": 2, "prod": 2}


def test_incompatible_push_is_422_naming_module_and_shapes(
    world: dict[str, Any], models: Models, registry_server: RegistryServer
) -> None:
    client, org = world["client"], world["org"]
    r = push(client, models.adapter.path, f"{org}/wrong", base=world["other_base"])
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "incompatible"
    problems = err["details"]["problems"]
    assert problems
    first = next(p for p in problems if p["module"] == "model.layers.0.self_attn.q_proj")
    assert first["expected"] and first["found"] and first["expected"] != first["found"]
    assert "model.layers.0.self_attn.q_proj" in err["message"]
    # nothing half-written: no adapter, no version
    assert client.get(f"/adapters/{org}/wrong").status_code == 404


@pytest.mark.parametrize("kind", ["tensor", "option"])
def test_push_with_unknown_tensor_or_option_is_422(
    world: dict[str, Any], models: Models, tmp_path: Path, kind: str
) -> None:
    client, org = world["client"], world["org"]
    bad = tamper(models.adapter.path, tmp_path / "bad", kind)
    r = push(client, bad, f"{org}/tampered", base=world["base"])
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    codes = {p["code"] for p in err["details"]["problems"]}
    assert codes == ({"unmapped_tensor"} if kind == "tensor" else {"unknown_option"})
    assert (UNKNOWN_TENSOR if kind == "tensor" else UNKNOWN_OPTION) in err["message"]
    assert client.get(f"/adapters/{org}/tampered").status_code == 404


def test_bad_manifests_are_4xx_and_write_nothing(
    world: dict[str, Any], models: Models, tmp_path: Path
) -> None:
    client, org = world["client"], world["org"]
    files = folder_files(models.adapter.path)
    upload(client, models.adapter.path, files)

    def create(body: Any, target: str = f"{org}/bad", **kw: Any) -> httpx.Response:
        return client.post(f"/adapters/{target}/versions", json=body, **kw)

    # a blob never uploaded
    ghost = [*files, {"path": "extra.bin", "digest": "sha256:" + "ab" * 32, "size": 3}]
    r = create({"files": ghost, "base": world["base"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "blob_unknown", r.text
    assert r.json()["error"]["details"]["missing"] == ["sha256:" + "ab" * 32]
    # a size that does not match the blob
    wrong_size = [
        dict(f, size=f["size"] + 1) if f["path"] == "adapter_config.json" else f for f in files
    ]
    assert create({"files": wrong_size, "base": world["base"]}).status_code == 400
    # paths that escape the folder, duplicates, missing weights
    for path in ("../x", "/etc/passwd", "a//b", "a\\b", "./x"):
        bad = [*files, {"path": path, "digest": files[0]["digest"], "size": files[0]["size"]}]
        r = create({"files": bad, "base": world["base"]})
        assert r.status_code == 400, (path, r.text)
    only_config = [f for f in files if f["path"] == "adapter_config.json"]
    assert create({"files": only_config, "base": world["base"]}).status_code == 400
    # malformed JSON, wrong types, unknown base
    r = client.post(
        f"/adapters/{org}/bad/versions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"
    assert create({"files": "nope"}).status_code == 400
    assert create({"files": files, "base": "no/such-base"}).status_code == 400
    # bad names: .., upper case, 500 characters, a slash (routing: 404 or 405, never 500)
    for target in (f"{org}/a..b", f"{org}/Upper", f"{org}/" + "x" * 500, f"..{org}/x"):
        r = create({"files": files, "base": world["base"]}, target=target)
        assert r.status_code == 400, (target, r.text)
        assert r.json()["error"]["code"] == "invalid_input"
    r = create({"files": files, "base": world["base"]}, target=f"{org}/a/b")
    assert 400 <= r.status_code < 500 and "error" in r.json()

    # a safetensors header that lies about sizes (claims more bytes than the file has)
    lying = tmp_path / "lying"
    lying.mkdir()
    (lying / "adapter_config.json").write_bytes(
        (models.adapter.path / "adapter_config.json").read_bytes()
    )
    header = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": {
            "dtype": "F32",
            "shape": [4, 32],
            "data_offsets": [0, 10**12],
        }
    }
    raw = json.dumps(header).encode()
    weights = lying / "adapter_model.safetensors"
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    r = push(client, lying, f"{org}/bad", base=world["base"])
    assert r.status_code == 400, r.text
    assert "adapter_model.safetensors" in r.json()["error"]["message"]
    # a header length beyond the file
    (lying / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 10**15) + b"{}")
    assert push(client, lying, f"{org}/bad", base=world["base"]).status_code == 400

    # none of it created anything
    assert client.get(f"/adapters/{org}/bad").status_code == 404


def test_deleted_version_is_soft(world: dict[str, Any], models: Models) -> None:
    client, org = world["client"], world["org"]
    push(client, models.adapter.path, f"{org}/d", base=world["base"])
    v2 = push(client, models.adapter_r8.path, f"{org}/d", base=world["base"]).json()
    r = client.delete(f"/adapters/{org}/d/versions/2", params={"reason": "leaked data"})
    assert r.status_code == 200, r.text
    assert r.json()["delete_reason"] == "leaked data" and r.json()["deleted_at"]
    assert client.get(f"/adapters/{org}/d/versions/2").status_code == 404
    shown = client.get(f"/adapters/{org}/d/versions/2", params={"include_deleted": True})
    assert shown.status_code == 200 and shown.json()["delete_reason"] == "leaked data"
    # latest falls back to 1; blobs stay in the registry (their upload check says present)
    assert client.get("/resolve", params={"ref": f"{org}/d"}).json()["number"] == 1
    digests = [f["digest"] for f in v2["files"]]
    assert client.post("/uploads", json={"digests": digests}).json()["missing"] == []
    # the next push gets number 3: numbers are never reused
    v3 = push(
        client, models.variant(models.base.path.parent, 7).path, f"{org}/d", base=world["base"]
    )
    assert v3.status_code == 201 and v3.json()["number"] == 3
    assert client.delete(f"/adapters/{org}/d/versions/1").status_code == 400  # no reason


def test_restore_undoes_a_delete(world: dict[str, Any], models: Models) -> None:
    client, org = world["client"], world["org"]
    push(client, models.adapter.path, f"{org}/r", base=world["base"])
    v2 = push(client, models.adapter_r8.path, f"{org}/r", base=world["base"]).json()
    assert (
        client.delete(f"/adapters/{org}/r/versions/2", params={"reason": "oops"}).status_code == 200
    )
    assert client.get("/resolve", params={"ref": f"{org}/r"}).json()["number"] == 1
    # restore by digest; latest (automatic) follows the newest again
    r = client.post(f"/adapters/{org}/r/versions/{v2['digest']}/restore")
    assert r.status_code == 200, r.text
    assert r.json()["number"] == 2 and r.json()["deleted_at"] is None
    assert r.json()["delete_reason"] is None
    assert client.get("/resolve", params={"ref": f"{org}/r"}).json()["number"] == 2
    assert client.get(f"/adapters/{org}/r/versions/2").status_code == 200
    # a live version is a conflict; an unknown one a 404; a tag is not a version selector
    again = client.post(f"/adapters/{org}/r/versions/2/restore")
    assert again.status_code == 409 and "not deleted" in again.json()["error"]["message"]
    assert client.post(f"/adapters/{org}/r/versions/9/restore").status_code == 404
    assert client.post(f"/adapters/{org}/r/versions/latest/restore").status_code == 400
    actions = [
        e["action"]
        for e in world["admin"].get("/audit", params={"target": f"{org}/r@2"}).json()["events"]
    ]
    assert actions[:2] == ["version.restore", "version.delete"]


def test_push_does_not_flip_visibility(world: dict[str, Any], models: Models) -> None:
    client, org = world["client"], world["org"]
    assert (
        push(client, models.adapter.path, f"{org}/vis", base=world["base"], public=True).json()[
            "number"
        ]
        == 1
    )
    r = push(client, models.adapter_r8.path, f"{org}/vis", base=world["base"], public=False)
    assert r.status_code == 409
    err = r.json()["error"]
    assert "loreg adapter set" in err["message"] and err["details"]["visibility"] == "public"
    # the same content again with the conflicting flag: refused too, nothing changed
    assert (
        push(
            client, models.adapter.path, f"{org}/vis", base=world["base"], public=False
        ).status_code
        == 409
    )
    assert client.get(f"/adapters/{org}/vis").json()["public"] is True
    assert client.get(f"/adapters/{org}/vis/versions").json()["versions"][0]["number"] == 1
    # the flag that agrees, or none, pushes as usual
    assert (
        push(
            client, models.adapter_r8.path, f"{org}/vis", base=world["base"], public=True
        ).status_code
        == 201
    )


def test_concurrent_pushes_get_consecutive_numbers(
    world: dict[str, Any],
    models: Models,
    registry_server: RegistryServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    client, org = world["client"], world["org"]
    root = tmp_path_factory.mktemp("variants")
    folders = [
        make_lora_adapter(models.base, root / f"v{i}", r=4, seed=100 + i).path for i in range(20)
    ]
    manifests = []
    for folder in folders:
        files = folder_files(folder)
        upload(client, folder, files)
        manifests.append(files)
    results: list[httpx.Response] = []
    barrier = threading.Barrier(len(manifests))
    token = world["owner"].token

    def run(files: list[dict[str, Any]]) -> None:
        with httpx.Client(
            base_url=registry_server.api_url,
            timeout=120,
            headers={"Authorization": f"Bearer {token}"},
        ) as c:
            barrier.wait()
            results.append(
                c.post(
                    f"/adapters/{org}/race/versions", json={"files": files, "base": world["base"]}
                )
            )

    threads = [threading.Thread(target=run, args=(m,)) for m in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201] * 20, [
        r.text for r in results if r.status_code != 201
    ]
    assert sorted(r.json()["number"] for r in results) == list(range(1, 21))
    assert client.get("/resolve", params={"ref": f"{org}/race"}).json()["number"] == 20


def test_the_base_match_of_a_push(
    world: dict[str, Any], models: Models, tmp_path: Path, registry_server: RegistryServer
) -> None:
    """``exact`` when the base the adapter states (its config's base_model_name_or_path when
    registered, else ``base``) is the one checked; ``structural`` with a hint otherwise."""
    from tests.factories.tiny_models import make_llama

    client, org = world["client"], world["org"]
    same_shapes = make_llama(tmp_path / "same-shapes", seed=5)  # other weights
    lookalike = f"test/{unique_name('lookalike')}"
    assert register_base(client, same_shapes, lookalike).status_code == 201

    # the config names no registered base: "base" is the statement
    r = push(client, models.adapter.path, f"{org}/m1", base=world["base"])
    assert r.status_code == 201, r.text
    compat = r.json()["compatibility"]
    assert compat["match"] == "exact" and compat["match_hint"] is None
    assert compat["base_fingerprint"] == compat["expected_fingerprint"]

    # the config names a registered base: that is the statement, whatever "base" says
    stating = tmp_path / "stating"
    stating.mkdir()
    for f in models.adapter.path.iterdir():
        (stating / f.name).write_bytes(f.read_bytes())
    config = json.loads((stating / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = world["base"]
    (stating / "adapter_config.json").write_text(json.dumps(config))
    r = push(client, stating, f"{org}/m2")  # no "base": the config's is used
    assert r.status_code == 201, r.text
    assert r.json()["compatibility"]["match"] == "exact"
    r = push(client, stating, f"{org}/m3", base=lookalike)
    assert r.status_code == 201, r.text
    compat = r.json()["compatibility"]
    assert compat["match"] == "structural"
    assert [w["code"] for w in compat["warnings"]] == ["structural_match_only"]
    assert world["base"] in compat["match_hint"] and lookalike in compat["match_hint"]


def _same_answer(a: httpx.Response, b: httpx.Response, *pairs: tuple[str, str]) -> None:
    """Two answers are the same but for the names in ``pairs`` (what the caller typed)."""
    ta, tb = a.text, b.text
    for x, y in pairs:
        ta = ta.replace(x, "<name>")
        tb = tb.replace(y, "<name>")
    assert (a.status_code, ta) == (b.status_code, tb)


def test_a_digest_is_not_a_capability(
    world: dict[str, Any], models: Models, tmp_path: Path, registry_server: RegistryServer
) -> None:
    """Knowing a private blob's digest (and size) gets an outsider nothing: a version naming
    it fails exactly as for a digest never uploaded, without the stored size; the blob stays
    a 404 and /uploads asks for it. Uploading the bytes (proof of possession) is the way."""
    victim, org = world["client"], world["org"]
    r = push(victim, models.adapter.path, f"{org}/secret", base=world["base"])
    assert r.status_code == 201, r.text
    loot = next(f for f in r.json()["files"] if f["path"] == "adapter_model.safetensors")

    thief_account = registry_server.make_user()
    thief = registry_server.client(thief_account.token)
    mine = models.variant(tmp_path, 77).path
    files = folder_files(mine)
    upload(thief, mine, files)
    ghost = {"path": "loot.bin", "digest": "sha256:" + "ab" * 32, "size": loot["size"]}
    target = f"{thief_account.name}/loot"

    def claim(extra: dict[str, Any]) -> httpx.Response:
        return thief.post(
            f"/adapters/{target}/versions", json={"files": [*files, extra], "base": world["base"]}
        )

    stolen = claim({"path": "loot.bin", "digest": loot["digest"], "size": loot["size"]})
    never = claim(ghost)
    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "blob_unknown"
    _same_answer(stolen, never, (loot["digest"], ghost["digest"]))
    # a wrong size changes nothing (no "stored_size" to learn the real one from)
    wrong = claim({"path": "loot.bin", "digest": loot["digest"], "size": loot["size"] + 1})
    _same_answer(
        wrong, claim({**ghost, "size": loot["size"] + 1}), (loot["digest"], ghost["digest"])
    )
    assert "stored_size" not in wrong.text and str(loot["size"] + 1) not in wrong.text
    # not readable, and /uploads is no existence oracle
    _same_answer(
        thief.get(f"/blobs/{loot['digest']}"),
        thief.get(f"/blobs/{ghost['digest']}"),
        (loot["digest"], ghost["digest"]),
    )
    assert thief.head(f"/blobs/{loot['digest']}").status_code == 404
    asked = thief.post("/uploads", json={"digests": [loot["digest"], ghost["digest"]]})
    assert asked.json()["missing"] == [loot["digest"], ghost["digest"]]
    assert thief.get(f"/adapters/{target}").status_code == 404  # nothing was created

    # whoever has the bytes proves it by uploading them; then the version goes through
    data = (models.adapter.path / "adapter_model.safetensors").read_bytes()
    assert thief.put(f"/blobs/{loot['digest']}", content=data).status_code == 200
    assert thief.post("/uploads", json={"digests": [loot["digest"]]}).json()["missing"] == []
    ok = claim({"path": "loot.bin", "digest": loot["digest"], "size": loot["size"]})
    assert ok.status_code == 201, ok.text


def test_readers_may_mount_what_they_can_read(
    world: dict[str, Any], models: Models, tmp_path: Path, registry_server: RegistryServer
) -> None:
    """OCI's cross-repository mount: blobs of a version the caller may read (its org's
    private one, anyone's public one) need no upload; a soft delete keeps them mountable
    for the namespace that had them."""
    owner, org = world["client"], world["org"]
    r = push(owner, models.adapter.path, f"{org}/shared", base=world["base"])
    assert r.status_code == 201, r.text
    files = r.json()["files"]
    reader = registry_server.make_user()
    registry_server.add_member(org, reader, "read")
    rc = registry_server.client(reader.token)
    digests = [f["digest"] for f in files]
    assert rc.post("/uploads", json={"digests": digests}).json()["missing"] == []
    body = {
        "files": [{k: f[k] for k in ("path", "digest", "size")} for f in files],
        "base": world["base"],
    }
    assert rc.post(f"/adapters/{reader.name}/copy/versions", json=body).status_code == 201
    # a public version's blobs: anyone
    pub = push(owner, models.adapter_r8.path, f"{org}/open", base=world["base"], public=True)
    stranger = registry_server.client(registry_server.make_user().token)
    pub_body = {
        "files": [{k: f[k] for k in ("path", "digest", "size")} for f in pub.json()["files"]],
        "base": world["base"],
    }
    who = stranger.get("/whoami").json()["user"]
    assert stranger.post(f"/adapters/{who}/fork/versions", json=pub_body).status_code == 201
    # deleted: the org keeps what it proved it had (its members still mount the blobs);
    # nobody outside it ever could
    assert owner.delete(f"/adapters/{org}/shared/versions/1?reason=oops").status_code == 200
    late = registry_server.make_user()
    registry_server.add_member(org, late, "read")
    again = registry_server.client(late.token).post(
        f"/adapters/{late.name}/copy/versions", json=body
    )
    assert again.status_code == 201, again.text
    refused = stranger.post(f"/adapters/{who}/copy/versions", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "blob_unknown"


def test_push_answers_alike_whether_a_private_adapter_exists(
    world: dict[str, Any], models: Models, registry_server: RegistryServer
) -> None:
    """An outsider pushing into an org learns nothing about the org's private adapters."""
    owner, org = world["client"], world["org"]
    assert push(owner, models.adapter.path, f"{org}/hidden", base=world["base"]).status_code == 201
    outsider = registry_server.client(registry_server.make_user().token)
    files = folder_files(models.adapter.path)
    upload(outsider, models.adapter.path, files)
    body = {"files": files, "base": world["base"]}
    exists = outsider.post(f"/adapters/{org}/hidden/versions", json=body)
    absent = outsider.post(f"/adapters/{org}/nothing-here/versions", json=body)
    assert exists.status_code == 403, exists.text
    _same_answer(exists, absent, ("hidden", "nothing-here"))
    # a reader of the org may see it exists; they still cannot push
    reader = registry_server.make_user()
    registry_server.add_member(org, reader, "read")
    r = registry_server.client(reader.token).post(f"/adapters/{org}/hidden/versions", json=body)
    assert r.status_code == 403


def test_a_header_listing_300k_tensors_is_refused_cheaply(
    world: dict[str, Any], models: Models, tmp_path: Path
) -> None:
    """Bounded work per push: the tensor count is checked before any per-tensor work, and
    the answer is small."""
    client, org = world["client"], world["org"]
    tensors = {f"base_model.model.t{i}.lora_A.weight": ("F16", [1]) for i in range(300_000)}
    folder = adapter_with_tensors(models.adapter, tmp_path / "huge", tensors)
    header_bytes = (folder / "adapter_model.safetensors").stat().st_size
    assert header_bytes > 25_000_000
    files = folder_files(folder)
    upload(client, folder, files)
    started = time.monotonic()
    r = client.post(f"/adapters/{org}/huge/versions", json={"files": files, "base": world["base"]})
    elapsed = time.monotonic() - started
    assert r.status_code == 400, r.text[:500]
    assert r.json()["error"]["code"] == "safetensors_too_many_tensors"
    assert "300000 tensors" in r.json()["error"]["message"]
    assert len(r.content) < 2000
    assert elapsed < 5, elapsed  # the unbounded parse and check took ~10 s of CPU


def test_incompatibility_reports_are_capped(
    world: dict[str, Any], models: Models, tmp_path: Path
) -> None:
    client, org = world["client"], world["org"]
    tensors: dict[str, tuple[str, list[int]]] = {}
    for i in range(150):  # layers the tiny base does not have: one problem each, at least
        prefix = f"base_model.model.model.layers.{100 + i}.self_attn.q_proj"
        tensors[f"{prefix}.lora_A.weight"] = ("F32", [4, 32])
        tensors[f"{prefix}.lora_B.weight"] = ("F32", [32, 4])
    folder = adapter_with_tensors(models.adapter, tmp_path / "many", tensors)
    files = folder_files(folder)
    upload(client, folder, files)
    r = client.post(f"/adapters/{org}/many/versions", json={"files": files, "base": world["base"]})
    assert r.status_code == 422, r.text[:500]
    report = r.json()["error"]["details"]
    assert len(report["problems"]) == 100 < report["problems_total"]


def test_disguised_file_names_and_unstorable_text_are_refused_alike(
    world: dict[str, Any], models: Models
) -> None:
    """Control and bidi-override characters in file names, and NUL in labels or free text,
    are a clear 400 on SQLite and PostgreSQL alike, and nothing is created."""
    client, org = world["client"], world["org"]
    files = folder_files(models.adapter.path)
    upload(client, models.adapter.path, files)
    extra = dict(files[0])
    for name in (
        "evil\u202egnp.safetensors",
        "a\u2066b.json",
        "x\x1b[31m.txt",
        "zero\u200bwidth.bin",
        "line\u2028sep",
        "del\x7f",
        "c1\x85ctl",
    ):
        r = client.post(
            f"/adapters/{org}/names/versions",
            json={"files": [*files, {**extra, "path": name}], "base": world["base"]},
        )
        assert r.status_code == 400, (repr(name), r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_input" and "rename the file" in error["message"]
    for body in ({"labels": {"dataset": "alpaca\x00"}}, {"description": "about\x00"}):
        r = client.post(
            f"/adapters/{org}/names/versions", json={"files": files, "base": world["base"], **body}
        )
        assert r.status_code == 400, r.text
        assert "NUL character" in r.json()["error"]["message"]
    assert client.get(f"/adapters/{org}/names").status_code == 404
    for query in ({"label": "dataset=a\x00"}, {"text": "a\x00"}, {"target": "q\x00"}):
        r = client.get("/adapters", params=query)
        assert r.status_code == 400 and "NUL character" in r.json()["error"]["message"], query
    # an ordinary non-ASCII name is fine
    r = client.post(
        f"/adapters/{org}/names/versions",
        json={"files": [*files, {**extra, "path": "notes/résumé-数据.md"}], "base": world["base"]},
    )
    assert r.status_code == 201, r.text
