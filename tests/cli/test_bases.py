"""``loreg base manifest DIR``: the body that registers a base, usable with plain HTTP."""

from __future__ import annotations

import json

import httpx

from tests.cli.harness import LoregEnv
from tests.factories.cli_models import Models


def test_manifest_registers_through_the_api(embedded: LoregEnv, models: Models) -> None:
    from loreg.formats.base import fingerprint

    r = embedded
    body = r.json("base", "manifest", str(models.base.path), "--name", "acme/from-manifest")
    expected = fingerprint(models.base.path)
    assert body["name"] == "acme/from-manifest"
    assert body["fingerprint"] == expected.fingerprint
    assert set(body["tensors"]) == set(expected.tensors)
    plain = json.loads(r.run("base", "manifest", str(models.base.path)).stdout)
    assert "name" not in plain and plain["fingerprint"] == expected.fingerprint

    token = json.loads((r.home / "credentials.json").read_text())["token"]
    resp = httpx.post(
        f"{r.url}/api/v1/bases", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert resp.status_code == 201, resp.text
    shown = r.json("base", "show", "acme/from-manifest")
    assert shown["fingerprint"] == expected.fingerprint and shown["has_weights"] is False


def test_manifest_bad_input(embedded: LoregEnv, tmp_path: object) -> None:
    r = embedded
    assert (
        "--name" in r.run("base", "manifest", str(embedded.home), "--name", "a/b/c", check=2).stderr
    )
    r.run("base", "manifest", "/no/such/folder", check=2)
    empty = r.run("base", "manifest", str(tmp_path), check=3)  # not a checkpoint: invalid
    assert empty.stderr.startswith("error: ") and len(empty.stderr.strip().splitlines()) == 1
