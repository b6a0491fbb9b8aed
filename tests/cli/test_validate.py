"""``loreg validate ADAPTER --base NAME``: against a registered base, through the binary."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Models
from tests.cli.harness import LoregEnv, one_line_error


@pytest.fixture(scope="module")
def registered(embedded: LoregEnv, models: Models) -> LoregEnv:
    embedded.json("base", "register", str(models.base.path), "--name", "test/tiny-llama",
                  "--no-upload")
    embedded.json("base", "register", str(models.wrong_base.path), "--name", "test/wide",
                  "--no-upload")
    return embedded


def test_against_a_registered_name_matches_the_folder(registered: LoregEnv,
                                                      models: Models) -> None:
    r = registered
    by_name = r.json("validate", str(models.adapter.path), "--base", "test/tiny-llama")
    by_folder = r.json("validate", str(models.adapter.path), "--base", str(models.base.path))
    assert by_name["compatible"] is True
    assert by_name["base"].startswith("test/tiny-llama (registered")
    for key in ("compatible", "problems", "warnings", "modules_checked",
                "saved_modules_checked", "base_structure_hash"):
        assert by_name[key] == by_folder[key], key
    assert by_name["modules_checked"] > 0
    assert "test/tiny-llama" in r.run("validate", str(models.adapter.path), "--base",
                                      "test/tiny-llama").stdout


def test_incompatible_registered_base_exits_3(registered: LoregEnv, models: Models) -> None:
    bad = registered.run("validate", str(models.adapter.path), "--base", "test/wide", check=3)
    assert "self_attn.q_proj" in bad.stdout and "INCOMPATIBLE" in bad.stdout


def test_unknown_names_and_paths(registered: LoregEnv, models: Models) -> None:
    r = registered
    missing = r.run("validate", str(models.adapter.path), "--base", "test/nope", check=1)
    one_line_error(missing, "loreg base register DIR --name test/nope")
    neither = r.run("validate", str(models.adapter.path), "--base", "./no/such/dir/x", check=1)
    one_line_error(neither, "no such folder", "loreg base ls")
    as_json = r.run("validate", str(models.adapter.path), "--base", "test/nope", "--json",
                    check=1).json
    assert as_json["error"]["code"].endswith("not_found")
    # the registry down: a clear error, exit 1 (no stack trace)
    down = r.run("validate", str(models.adapter.path), "--base", "test/tiny-llama",
                 env=r.env(LOREG_URL="http://127.0.0.1:9"), check=1)
    assert down.stderr.startswith("error: ") and "Traceback" not in down.stderr
