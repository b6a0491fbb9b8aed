"""The whole flow through the real binaries, on the embedded default and on PostgreSQL + S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.cli.harness import LoregEnv
from tests.factories.cli_models import Models
from tests.factories.tiny_models import load_model


def same_tree(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.slow
def test_flow(registry: LoregEnv, models: Models, tmp_path: Path) -> None:
    r = registry
    me = r.json("whoami")
    assert me["user"] == "admin"

    # base register: the fingerprint is the formats package's
    from loreg.formats.base import fingerprint

    base = r.json("base", "register", str(models.base.path), "--name", "test/tiny-llama")
    assert base["fingerprint"] == fingerprint(models.base.path).fingerprint
    assert (
        r.run("base", "register", str(models.base.path), "--name", "test/tiny-llama").stdout.strip()
        == base["fingerprint"]
    )
    assert [b["name"] for b in r.json("base", "ls")] == ["test/tiny-llama"]
    assert r.json("base", "show", "test/tiny-llama")["has_weights"] is True
    assert "test/tiny-llama" in r.run("base", "ls").stdout

    # push with tag and labels
    pushed = r.json(
        "push",
        str(models.adapter.path),
        "admin/bot:prod",
        "--base",
        "test/tiny-llama",
        "--label",
        "dataset=support",
        "--label",
        "run=42",
    )
    v1 = pushed["version"]
    assert v1["number"] == 1 and pushed["uploaded_bytes"] == pushed["total_bytes"] > 0
    assert {"prod", "latest"} <= set(v1["tags"])

    # ls / show
    listed = r.json("ls")
    assert [(a["namespace"], a["name"]) for a in listed] == [("admin", "bot")]
    assert r.json("ls", "--base", "test/tiny-llama", "--target", "q_proj")[0]["name"] == "bot"
    assert r.json("ls", "--base", "nope/nothing") == []
    assert "admin/bot" in r.run("ls").stdout
    shown = r.json("show", "admin/bot:prod")
    assert (shown["number"], shown["r"], shown["base"]) == (1, 4, "test/tiny-llama")
    assert shown["labels"] == {"dataset": "support", "run": "42"}

    # pull: byte-identical
    out = tmp_path / "pulled"
    pulled = r.json("pull", "admin/bot:prod", "-o", str(out))
    assert pulled["path"] == str(out)
    same_tree(models.adapter.path, out)
    again = r.json("pull", f"admin/bot@{v1['digest']}", "-o", str(tmp_path / "pulled2"))
    assert again["downloaded_bytes"] == 0  # everything came from the cache
    same_tree(models.adapter.path, tmp_path / "pulled2")

    # re-push: nothing uploaded, same version
    re = r.json("push", str(models.adapter.path), "admin/bot:prod", "--base", "test/tiny-llama")
    assert re["uploaded_bytes"] == 0 and re["uploaded_files"] == 0
    assert (re["version"]["number"], re["version"]["digest"]) == (1, v1["digest"])

    # a second version, then move the tag
    v2 = r.json("push", str(models.adapter2.path), "admin/bot", "--base", "test/tiny-llama")[
        "version"
    ]
    assert v2["number"] == 2
    assert r.json("show", "admin/bot:prod")["number"] == 1
    r.json("tag", "admin/bot@2", "prod")
    assert r.json("show", "admin/bot:prod")["number"] == 2

    # merge on the workers: equals PEFT's merge_and_unload
    merged_dir = tmp_path / "merged"
    merged = r.json("merge", "admin/bot@1", "--base", "test/tiny-llama", "-o", str(merged_dir))
    assert merged["job"]["status"] == "succeeded"
    expected = models.adapter.model.merge_and_unload().state_dict()
    got = load_model(merged_dir).state_dict()
    for name, tensor in expected.items():
        if name in got:
            torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-5)
    assert set(expected) - set(got) <= {"lm_head.weight"}

    # combine
    combined = r.json(
        "combine",
        "admin/bot@1",
        "admin/bot@2",
        "--method",
        "linear",
        "--weights",
        "0.5,0.5",
        "--to",
        "admin/combo:v1",
    )
    assert combined["status"] == "succeeded"
    lineage = r.json("show", "admin/combo:v1")["lineage"]
    assert sorted(p["parent"] for p in lineage) == ["admin/bot@1", "admin/bot@2"]

    # export with a dtype cast
    exp = tmp_path / "exported"
    r.json("export", "admin/bot@1", "--dtype", "float16", "-o", str(exp))
    with safe_open(str(exp / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118
    assert json.loads((exp / "adapter_config.json").read_text())["r"] == 4

    # validate against a wrong base: exit 3, the module named
    bad = r.run(
        "validate", str(models.adapter.path), "--base", str(models.wrong_base.path), check=3
    )
    assert "self_attn.q_proj" in bad.stdout + bad.stderr
    r.json("base", "register", str(models.wrong_base.path), "--name", "test/wrong", "--no-upload")
    refused = r.run(
        "push", str(models.adapter2.path), "admin/other", "--base", "test/wrong", "--json", check=3
    )
    err = refused.json["error"]
    assert err["code"] == "incompatible" and "q_proj" in err["message"]

    # jobs ls / show / cancel
    jobs = r.json("jobs", "ls")
    assert {"merge", "combine", "export"} <= {j["type"] for j in jobs}
    assert r.json("jobs", "show", jobs[0]["id"])["id"] == jobs[0]["id"]
    assert "ID" in r.run("jobs", "ls").stdout
    job = r.json(
        "merge", "admin/bot@2", "--base", "test/tiny-llama", "--weights", "0.3", "--no-wait"
    )
    cancelled = r.json("jobs", "cancel", job["id"])
    assert cancelled["status"] == "cancelled" or cancelled["cancel_requested"]
    waited = r.run("jobs", "wait", job["id"], "--json", check=1)
    assert waited.json["error"]["code"] == "job_cancelled"
    assert r.json("jobs", "show", job["id"])["status"] == "cancelled"

    # errors with --json are the API's error object
    missing = r.run("show", "admin/nothing", "--json", check=1).json
    assert missing["error"]["code"].endswith("not_found")
