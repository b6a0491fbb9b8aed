"""push / pull / show through the real ``loreg`` binary: the base match a push reports, the
human form of ``show``, absolute paths, flags named in errors, offline pulls."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.cli.harness import LoregEnv, Result
from tests.factories.cli_models import Models
from tests.factories.tiny_models import make_llama, make_lora_adapter


def one_line_error(res: Result) -> str:
    assert res.stdout == "", res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def _stating(adapter: Path, base_name: str, dest: Path) -> Path:
    """A copy of ``adapter`` whose config says it was trained on ``base_name``."""
    shutil.copytree(adapter, dest)
    config = json.loads((dest / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_name
    (dest / "adapter_config.json").write_text(json.dumps(config))
    return dest


@pytest.mark.slow
def test_push_reports_exact_or_structural_and_how_to_get_exact(
    embedded: LoregEnv, models: Models, tmp_path: Path
) -> None:
    r = embedded
    r.run("base", "register", str(models.base.path), "--name", "match/trained-on")
    # the same architecture with other weights
    other = make_llama(tmp_path / "other-base", seed=7)
    r.run("base", "register", str(other.path), "--name", "match/other-weights")
    adapter = _stating(models.adapter.path, "match/trained-on", tmp_path / "stating")

    # the config names a registered base and the push checks against it: exact
    res = r.run("push", str(adapter), "admin/match-a:v1")
    assert "base match/trained-on, match: exact" in res.stdout
    shown = r.run("show", "admin/match-a:v1").stdout
    assert re.search(r"^base match:\s+exact$", shown, re.MULTILINE)

    # --base names another registered base with the same shapes: structural, and the hint
    res = r.run("push", str(adapter), "admin/match-b:v1", "--base", "match/other-weights")
    assert "match: structural" in res.stdout
    assert "(loreg push --base match/trained-on) for an exact match" in res.stdout
    doc = r.json("show", "admin/match-b:v1")
    assert doc["compatibility"]["match"] == "structural"
    assert "match/trained-on" in doc["compatibility"]["match_hint"]

    # a config that names no registered base (a local path): --base is the statement
    res = r.run("push", str(models.adapter.path), "admin/match-c:v1", "--base", "match/trained-on")
    assert "match: exact" in res.stdout

    # ... and without --base the error names the flag, not the API field
    line = one_line_error(r.run("push", str(models.adapter.path), "admin/match-d:v1", check=1))
    assert "(--base)" in line and "'base'" not in line

    # the validation job keeps what the push established
    for job in r.json("jobs", "ls", "--type", "validate"):
        assert r.json("jobs", "wait", str(job["id"]))["status"] == "succeeded"
    report = r.json("show", "admin/match-b:v1")["validation_report"]
    assert report["compatibility"]["match"] == "structural"
    report = r.json("show", "admin/match-a:v1")["validation_report"]
    assert report["compatibility"]["match"] == "exact"


@pytest.mark.slow
def test_show_prints_text_not_python_reprs(
    embedded: LoregEnv, models: Models, tmp_path: Path
) -> None:
    r = embedded
    r.run("base", "register", str(models.base.path), "--name", "admin/show-base")
    adapter = make_lora_adapter(
        models.base,
        tmp_path / "dora",
        use_dora=True,
        use_rslora=True,
        target_modules=["q_proj", "v_proj"],
        rank_pattern={"q_proj": 8},
        alpha_pattern={"v_proj": 16},
        modules_to_save=["lm_head"],
    )
    r.run(
        "push",
        str(adapter.path),
        "admin/show-dora:v1",
        "--base",
        "admin/show-base",
        "--label",
        "dataset=tickets",
        "--label",
        "run=7",
    )
    out = r.run("show", "admin/show-dora:v1").stdout
    rows = dict(re.findall(r"^([a-zA-Z_ ]+):\s+(.*)$", out, re.MULTILINE))
    assert rows["DoRA"] == "yes" and rows["rsLoRA"] == "yes"
    assert rows["rank pattern"] == "q_proj=8" and rows["alpha pattern"] == "v_proj=16"
    assert rows["modules to save"] == "lm_head"
    assert set(rows["targets"].split(", ")) == {"q_proj", "v_proj"}
    assert rows["labels"] == "dataset=tickets, run=7"
    assert set(rows["tags"].split(", ")) == {"latest", "v1"}
    assert rows["base match"] == "exact" or rows["base match"].startswith("exact")
    for repr_mark in ("['", "{'", "': ", "True", "False", "None"):
        assert repr_mark not in out, repr_mark

    # an adapter without any of those says so in words
    r.run("push", str(models.adapter.path), "admin/show-plain:v1", "--base", "admin/show-base")
    rows = dict(
        re.findall(
            r"^([a-zA-Z_ ]+):\s+(.*)$", r.run("show", "admin/show-plain:v1").stdout, re.MULTILINE
        )
    )
    assert (rows["DoRA"], rows["rsLoRA"], rows["rank pattern"], rows["modules to save"]) == (
        "no",
        "no",
        "none",
        "none",
    )


@pytest.mark.slow
def test_printed_paths_are_absolute(embedded: LoregEnv, models: Models, tmp_path: Path) -> None:
    r = embedded
    r.run("base", "register", str(models.base.path), "--name", "admin/paths-base")
    r.run("push", str(models.adapter.path), "admin/paths-a:v1", "--base", "admin/paths-base")
    res = r.run("pull", "admin/paths-a:v1", "-o", "pulled", cwd=tmp_path)
    assert res.stdout.strip() == str(tmp_path / "pulled")
    res = r.run(
        "merge", "admin/paths-a:v1", "--base", "admin/paths-base", "-o", "merged", cwd=tmp_path
    )
    assert res.stdout.strip() == str(tmp_path / "merged")
    res = r.run(
        "merge",
        str(models.adapter.path),
        "--base",
        str(models.base.path),
        "-o",
        "merged-local",
        "--local",
        cwd=tmp_path,
    )
    assert res.stdout.strip() == str(tmp_path / "merged-local")
    assert f"into {models.base.path}" in res.stderr


def test_no_wait_with_an_output_folder_is_a_usage_error(tmp_path: Path) -> None:
    env = LoregEnv(home=tmp_path / "home", extra={"LOREG_URL": "http://127.0.0.1:9"})
    for args in (["merge", "a/b:v1", "--base", "x/y"], ["export", "a/b:v1"]):
        res = env.run(*args, "--no-wait", "-o", str(tmp_path / "out"), check=2)
        assert "--no-wait returns before the job has written anything" in res.stderr
        assert "loreg jobs wait ID -o DIR" in res.stderr
    res = env.run("merge", "a", "--base", "b", "--local", "--no-wait", "-o", "o", check=2)
    assert "--local merges here and waits" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_job_parameters_are_named_as_flags(embedded: LoregEnv, models: Models) -> None:
    r = embedded
    r.run("base", "register", str(models.base.path), "--name", "admin/flags-base")
    r.run("push", str(models.adapter.path), "admin/flags-a:v1", "--base", "admin/flags-base")
    res = r.run(
        "merge",
        "admin/flags-a:v1",
        "--base",
        "admin/flags-base",
        "--method",
        "ties",
        "--density",
        "7",
        "--no-wait",
        check=1,
    )
    line = one_line_error(res)
    assert "--density" in line and "density:" not in line.replace("--density:", "")


@pytest.mark.slow
def test_offline_pull_from_the_cache_with_the_server_stopped(
    models: Models, tmp_path: Path
) -> None:
    env = LoregEnv(home=tmp_path / "home", extra={"LOREG_WORKER_POLL_SECONDS": "0.2"})
    env.start_server()
    try:
        env.run("base", "register", str(models.base.path), "--name", "admin/off-base")
        pushed = env.json(
            "push", str(models.adapter.path), "admin/off-a:v1", "--base", "admin/off-base"
        )
        digest = pushed["version"]["digest"]
        env.run("push", str(models.adapter2.path), "admin/off-a:v2", "--base", "admin/off-base")
        online = env.json("pull", "admin/off-a:v1", "-o", str(tmp_path / "online"))
        assert online["downloaded_bytes"] > 0
    finally:
        env.stop_all()  # no registry from here on

    offline = env.env(LOREG_OFFLINE="1")
    for i, ref in enumerate(["admin/off-a:v1", "admin/off-a@1", f"admin/off-a@{digest}"]):
        dest = tmp_path / f"offline-{i}"
        done = env.json("pull", ref, "-o", str(dest), env=offline)
        assert done["downloaded_bytes"] == 0 and done["cached_bytes"] > 0, ref
        for f in models.adapter.path.iterdir():
            assert (dest / f.name).read_bytes() == f.read_bytes(), (ref, f.name)

    # never pulled: a clear error, nothing written
    for ref in ("admin/off-a:v2", "admin/off-a@2", "admin/off-other"):
        line = one_line_error(
            env.run("pull", ref, "-o", str(tmp_path / "no"), env=offline, check=1)
        )
        assert "LOREG_OFFLINE is set" in line and "not in the local cache" in line
        assert "unset LOREG_OFFLINE" in line
    assert env.json("pull", "admin/off-a:v2", env=offline, check=1)["error"]["code"] == "not_cached"
    assert not (tmp_path / "no").exists()

    # a blob gone from the cache: said, not fetched
    cache = env.home / "cache" / "blobs" / "sha256"
    weights = next(f for f in online["files"] if f["path"] == "adapter_model.safetensors")
    hex_ = weights["digest"].removeprefix("sha256:")
    (cache / hex_[:2] / hex_).unlink()
    line = one_line_error(
        env.run("pull", "admin/off-a:v1", "-o", str(tmp_path / "gone"), env=offline, check=1)
    )
    assert "only partly in the local cache" in line and "adapter_model.safetensors" in line

    # other commands need the registry, and offline says so at once
    line = one_line_error(env.run("ls", env=offline, check=1))
    assert "LOREG_OFFLINE is set, and this needs the registry" in line
    # online, with the server stopped, the same pull says the registry is unreachable
    line = one_line_error(env.run("pull", "admin/off-a:v1", "-o", str(tmp_path / "x"), check=1))
    assert "cannot reach the registry" in line
