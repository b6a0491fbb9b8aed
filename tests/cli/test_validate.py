"""``loreg validate`` through the real binary: offline against a folder (what the base match
means and how to get ``exact``) and against a registered base's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from loreg.formats.base import fingerprint
from tests.cli.harness import LoregEnv, one_line_error
from tests.factories.cli_models import Models


def test_base_match_unverified_exact_structural(models: Models, tmp_path: Path) -> None:
    env = LoregEnv(home=tmp_path / "home")
    adapter, base = models.adapter.path, models.base.path

    # shapes only: unverified, and the output says how to get exact
    res = env.run("validate", str(adapter), "--base", str(base), cwd=tmp_path)
    assert res.stdout.splitlines()[0] == f"{adapter.absolute()} on {base.absolute()}"
    assert "base match: unverified" in res.stdout
    assert "pass --expected-fingerprint" in res.stdout and "loreg base show NAME" in res.stdout
    doc = env.json("validate", str(adapter), "--base", str(base))
    assert doc["match"] == "unverified" and "--expected-fingerprint" in doc["match_hint"]

    # the fingerprint of the base it was trained on: exact, no hint
    fp = fingerprint(base).fingerprint
    assert fp is not None
    res = env.run("validate", str(adapter), "--base", str(base), "--expected-fingerprint", fp)
    assert "base match: exact" in res.stdout and "base match exact:" not in res.stdout
    doc = env.json("validate", str(adapter), "--base", str(base), "--expected-fingerprint", fp)
    assert (doc["match"], doc["match_hint"], doc["base_fingerprint"]) == ("exact", None, fp)

    # same shapes, other weights: structural (a warning, still exit 0), with the way out
    other = "sha256:" + "0" * 64
    res = env.run("validate", str(adapter), "--base", str(base), "--expected-fingerprint", other)
    assert "base match: structural" in res.stdout and "structural_match_only" in res.stdout
    assert "validate against the base whose fingerprint is the expected one" in res.stdout


def test_relative_paths_are_printed_absolute(models: Models, tmp_path: Path) -> None:
    env = LoregEnv(home=tmp_path / "home")
    link = tmp_path / "work"
    link.mkdir()
    (link / "adapter").symlink_to(models.adapter.path)
    (link / "base").symlink_to(models.base.path)
    res = env.run("validate", "adapter", "--base", "base", cwd=link)
    assert res.stdout.splitlines()[0] == f"{link / 'adapter'} on {link / 'base'}"


@pytest.fixture(scope="module")
def registered(embedded: LoregEnv, models: Models) -> LoregEnv:
    embedded.json(
        "base", "register", str(models.base.path), "--name", "test/tiny-llama", "--no-upload"
    )
    embedded.json(
        "base", "register", str(models.wrong_base.path), "--name", "test/wide", "--no-upload"
    )
    return embedded


def test_against_a_registered_name_matches_the_folder(registered: LoregEnv, models: Models) -> None:
    r = registered
    by_name = r.json("validate", str(models.adapter.path), "--base", "test/tiny-llama")
    by_folder = r.json("validate", str(models.adapter.path), "--base", str(models.base.path))
    assert by_name["compatible"] is True
    assert by_name["base"].startswith("test/tiny-llama (registered")
    for key in (
        "compatible",
        "problems",
        "warnings",
        "modules_checked",
        "saved_modules_checked",
        "base_structure_hash",
    ):
        assert by_name[key] == by_folder[key], key
    assert by_name["modules_checked"] > 0
    assert (
        "test/tiny-llama"
        in r.run("validate", str(models.adapter.path), "--base", "test/tiny-llama").stdout
    )


def test_incompatible_registered_base_exits_3(registered: LoregEnv, models: Models) -> None:
    bad = registered.run("validate", str(models.adapter.path), "--base", "test/wide", check=3)
    assert "self_attn.q_proj" in bad.stdout and "INCOMPATIBLE" in bad.stdout


def test_unknown_names_and_paths(registered: LoregEnv, models: Models) -> None:
    r = registered
    missing = r.run("validate", str(models.adapter.path), "--base", "test/nope", check=1)
    one_line_error(missing, "loreg base register DIR --name test/nope")
    neither = r.run("validate", str(models.adapter.path), "--base", "./no/such/dir/x", check=1)
    one_line_error(neither, "no such folder", "loreg base ls")
    as_json = r.run(
        "validate", str(models.adapter.path), "--base", "test/nope", "--json", check=1
    ).json
    assert as_json["error"]["code"].endswith("not_found")
    # the registry down: a clear error, exit 1 (no stack trace)
    down = r.run(
        "validate",
        str(models.adapter.path),
        "--base",
        "test/tiny-llama",
        env=r.env(LOREG_URL="http://127.0.0.1:9"),
        check=1,
    )
    assert down.stderr.startswith("error: ") and "Traceback" not in down.stderr
