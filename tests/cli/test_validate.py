"""``loreg validate`` (offline) through the real binary: what the base match means and how
to get ``exact``."""

from __future__ import annotations

from pathlib import Path

from loreg.formats.base import fingerprint
from tests.cli.conftest import Models
from tests.cli.harness import LoregEnv


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
