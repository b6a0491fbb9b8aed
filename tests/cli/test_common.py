"""The CLI contract without a server: exit codes, --json errors, help, completion."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click
from click.testing import CliRunner

from loreg.cli.common import emit, json_mode, json_option
from tests.cli.harness import LOREG, LoregEnv, free_port


def _env(tmp_path: Path) -> LoregEnv:
    # A URL where nothing listens: no command here reaches a registry.
    return LoregEnv(home=tmp_path / "home", extra={"LOREG_URL": f"http://127.0.0.1:{free_port()}"})


def test_usage_errors_exit_2_and_json_mode_prints_an_error_object(tmp_path: Path) -> None:
    env = _env(tmp_path)
    res = env.run("push", check=2)
    assert "Missing argument" in res.stderr and res.stdout == ""
    res = env.run("push", "--json", check=2)
    assert res.json["error"]["code"] == "usage_error"
    res = env.run("merge", "a/b", "--base", "x", "--weights", "1,2", "-o", "out", "--json", check=2)
    assert "weight" in res.json["error"]["message"]


def test_a_bad_reference_is_refused_before_any_request(tmp_path: Path) -> None:
    env = _env(tmp_path)
    res = env.run("show", "Bad/Name", "--json", check=1)
    assert res.json["error"]["code"] == "invalid_reference"
    res = env.run("show", "Bad/Name", check=1)
    assert res.stdout == "" and res.stderr.startswith("error: ")
    assert "Traceback" not in res.stderr


def test_an_unreachable_registry_is_one_error_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    res = env.run("whoami", check=1)
    assert "cannot reach the registry" in res.stderr and "Traceback" not in res.stderr
    assert env.run("ls", "--json", check=1).json["error"]["code"] == "connection_failed"


def test_pull_into_a_missing_folder_arg_and_push_of_a_missing_folder(tmp_path: Path) -> None:
    env = _env(tmp_path)
    res = env.run("push", str(tmp_path / "nope"), "a/b", check=2)
    assert "does not exist" in res.stderr


def test_help_lists_every_command_group(tmp_path: Path) -> None:
    out = _env(tmp_path).run("--help").stdout
    for cmd in (
        "serve",
        "login",
        "whoami",
        "token",
        "user",
        "org",
        "base",
        "push",
        "pull",
        "ls",
        "show",
        "tag",
        "merge",
        "combine",
        "export",
        "jobs",
        "validate",
        "worker",
    ):
        assert f"  {cmd} " in out, cmd


def test_shell_completion_script(tmp_path: Path) -> None:
    env = _env(tmp_path).env(_LOREG_COMPLETE="bash_source")
    out = subprocess.run([LOREG], env=env, capture_output=True, text=True, check=True).stdout
    assert "_loreg_completion" in out and "complete " in out


def test_json_mode_is_per_invocation() -> None:
    """``--json`` lives in the click context: it does not leak into the next invocation in
    the same process (as it did when it was a module global)."""

    @click.command()
    @json_option
    def hello(as_json: bool) -> None:
        emit({"greeting": "hello"}, "hello")

    runner = CliRunner()
    assert json.loads(runner.invoke(hello, ["--json"]).output) == {"greeting": "hello"}
    assert runner.invoke(hello, []).output == "hello\n"
    assert not json_mode()  # outside any invocation


def test_a_broken_installation_says_to_reinstall(tmp_path: Path) -> None:
    """A runtime dependency missing from the environment: one line, what to do."""
    shim = tmp_path / "shim"
    (shim / "tqdm").mkdir(parents=True)
    (shim / "tqdm" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tqdm'\", name='tqdm')\n"
    )
    env = _env(tmp_path)
    res = env.run(
        "merge",
        str(tmp_path),
        "--base",
        str(tmp_path),
        "-o",
        str(tmp_path / "o"),
        "--local",
        check=1,
        env=env.env(PYTHONPATH=str(shim)),
    )
    assert res.stderr.count("\n") == 1 and "lacks the Python package 'tqdm'" in res.stderr
    assert "reinstall loreg" in res.stderr and "Traceback" not in res.stderr
