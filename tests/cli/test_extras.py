"""Install profiles: ``pip install loreg`` is a light client; the extras add the rest.

The slow half installs the package as a user would (``pip install .``, no extras) into a
fresh virtual environment, checks what came with it, and runs that installation's
``loreg`` and SDK against a registry served from the full development environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loreg.cli import extras
from tests.cli.harness import LoregEnv, one_line_error
from tests.factories.cli_models import Models

ROOT = Path(__file__).resolve().parents[2]
#: What the light profile must never bring: the server stack and the merge engine.
SERVER_STACK = (
    "torch",
    "safetensors",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "boto3",
    "botocore",
    "psycopg",
    "jinja2",
    "prometheus-client",
    "markdown-it-py",
    "swagger-ui-bundle-v2",
    "pyyaml",
)
SERVER_MODULES = (
    "torch",
    "safetensors",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "boto3",
    "botocore",
    "psycopg",
    "jinja2",
    "loreg.services",
    "loreg.api",
    "loreg.db",
    "loreg.storage",
    "loreg.worker",
    "loreg.merge",
    "loreg.ui",
    "loreg.migrations",
)

# --- the extras, read from this installation's metadata --------------------------------------


def test_the_extras_come_from_the_package_metadata() -> None:
    server = extras.requirements("server")
    assert {"torch", "safetensors"} <= set(extras.requirements("merge"))
    assert set(extras.requirements("merge")) <= set(server)  # server includes merge
    for name in ("fastapi", "sqlalchemy", "alembic", "boto3", "uvicorn"):
        assert name in server
    assert extras.missing("server") == []  # the development install has everything
    assert extras.requirements("no-such-extra") == []


def test_the_advice_names_the_extra_and_where_loreg_came_from() -> None:
    command = extras.install_command("server")
    assert command.startswith("pip install ") and "[server]" in command


def test_client_and_cli_import_nothing_of_the_server() -> None:
    """What `loreg --help`, the SDK and the vLLM plugin load: no server module, no torch."""
    code = (
        "import sys, loreg.cli.main, loreg.client, loreg.serving.vllm\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    leaked = [m for m in loaded if any(m == s or m.startswith(s + ".") for s in SERVER_MODULES)]
    # the merge methods' vocabulary, torch-free by design, so commands can offer them
    assert leaked == ["loreg.merge", "loreg.merge.options"]


# --- the light profile in a fresh virtual environment ----------------------------------------


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with ``pip install .`` (no extras) from a copy of the package's files.

    A copy, so the build leaves nothing in the working tree; pip's cache keeps it quick."""
    root = tmp_path_factory.mktemp("light")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "loreg", src / "loreg", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=900,
        env=env,
    )
    return venv


def _python(venv: Path, code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("LOREG_")}
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=venv,
        **kwargs,
    )  # type: ignore[call-overload]


def test_the_light_install_has_no_torch_and_no_server_stack(light: Path) -> None:
    res = _python(light, "import torch")
    assert res.returncode != 0 and "No module named 'torch'" in res.stderr
    listed = _python(
        light,
        "import importlib.metadata as m, json\n"
        "print(json.dumps(sorted(d.metadata['Name'].lower() "
        "for d in m.distributions())))",
        check=True,
    )
    installed = set(json.loads(listed.stdout))
    assert "loreg" in installed
    assert installed.isdisjoint(SERVER_STACK), installed & set(SERVER_STACK)


def test_pip_install_has_only_loreg_at_the_top_level(light: Path) -> None:
    found = _python(
        light,
        "import importlib.metadata as m, json\n"
        "d = m.distribution('loreg')\n"
        "print(json.dumps([d.read_text('top_level.txt'), "
        "[str(f) for f in d.files]]))",
        check=True,
    )
    top_level, files = json.loads(found.stdout)
    assert top_level.split() == ["loreg"]
    # RECORD: every installed file is under loreg/ (or the metadata, or the entry point)
    tops = {f.split("/")[0] for f in files if not f.startswith("../")}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"loreg"}
    assert {f for f in files if f.startswith("../")} == {"../../../bin/loreg"}
    # the package data the server needs, had the extra been chosen
    for data in (
        "loreg/migrations/script.py.mako",
        "loreg/migrations/versions/0001_initial.py",
        "loreg/formats/checkpoint_rules.json",
        "loreg/ui/templates/base.html",
    ):
        assert data in files, data


def test_the_light_client_pushes_and_pulls_against_a_server(
    light: Path, models: Models, tmp_path: Path
) -> None:
    server = LoregEnv(home=tmp_path / "server-home")
    server.start_server(worker=False)
    try:
        token = json.loads((server.home / "credentials.json").read_text())["token"]
        # a CI job: its own LOREG_HOME, the registry and a token from the environment
        ci = LoregEnv(
            home=tmp_path / "ci-home", extra={"LOREG_URL": server.url, "LOREG_TOKEN": token}
        )
        loreg = str(light / "bin" / "loreg")
        _push_pull_ls_show(ci, loreg, models, tmp_path)
        _missing_extras_say_what_to_install(ci, loreg, models, tmp_path)
        _the_sdk_is_typed_and_light(light, ci, tmp_path)
    finally:
        server.stop_all()


def _push_pull_ls_show(ci: LoregEnv, loreg: str, models: Models, tmp_path: Path) -> None:
    assert "push" in ci.run("--help", exe=loreg).stdout
    # safetensors headers are parsed without torch: validate and fingerprint work here
    ci.run("validate", str(models.adapter.path), "--base", str(models.base.path), exe=loreg)
    ci.run(
        "validate",
        str(models.adapter.path),
        "--base",
        str(models.wrong_base.path),
        check=3,
        exe=loreg,
    )
    fingerprint = ci.run(
        "base", "register", str(models.base.path), "--name", "org/light", "--no-upload", exe=loreg
    ).stdout.strip()
    assert fingerprint.startswith("sha256:")

    pushed = ci.run(
        "push",
        str(models.adapter.path),
        "admin/light:v1",
        "--base",
        "org/light",
        "--label",
        "ci=light",
        "--json",
        exe=loreg,
    ).json
    version = pushed["version"]
    assert version["ref"] == "admin/light@1" and pushed["uploaded_files"] >= 2
    assert version["base_model"]["fingerprint"] == fingerprint

    listed = ci.run("ls", "admin", "--json", exe=loreg).json
    assert [f"{a['namespace']}/{a['name']}" for a in listed] == ["admin/light"]
    shown = ci.run("show", "admin/light:v1", "--json", exe=loreg).json
    assert shown["digest"] == version["digest"] and shown["labels"] == {"ci": "light"}
    # the JSON documents are the API's: the full installation prints the same bytes
    assert (
        ci.run("show", "admin/light:v1", "--json", exe=loreg).stdout
        == ci.run("show", "admin/light:v1", "--json").stdout
    )
    human = ci.run("show", "admin/light:v1", exe=loreg).stdout
    assert "version:" in human and "admin/light@1" in human

    out = tmp_path / "pulled"
    pulled = ci.run("pull", "admin/light:v1", "-o", str(out), "--json", exe=loreg).json
    assert pulled["version"]["digest"] == version["digest"]
    for f in sorted(p for p in models.adapter.path.rglob("*") if p.is_file()):
        assert (out / f.relative_to(models.adapter.path)).read_bytes() == f.read_bytes(), f
    again = tmp_path / "pulled-offline"
    ci.run("pull", "admin/light@1", "-o", str(again), exe=loreg, env=ci.env(LOREG_OFFLINE="1"))
    assert (again / "adapter_config.json").is_file()


def _missing_extras_say_what_to_install(
    ci: LoregEnv, loreg: str, models: Models, tmp_path: Path
) -> None:
    for args, extra in [
        (["serve", "--port", "0"], "server"),
        (["worker", "--once"], "server"),
        (["db", "upgrade"], "server"),
        (["db", "current"], "server"),
        (["gc"], "server"),
        (
            [
                "merge",
                str(models.adapter.path),
                "--base",
                str(models.base.path),
                "-o",
                str(tmp_path / "merged"),
                "--local",
            ],
            "merge",
        ),
    ]:
        res = ci.run(*args, check=1, exe=loreg)
        line = one_line_error(res, "pip install", f"[{extra}]", f"loreg {args[0]}")
        assert "Traceback" not in res.stderr, line
        if args[0] == "worker":  # logs JSON lines of its own; no --json
            continue
        doc = ci.run(*args, "--json", check=1, exe=loreg).json
        assert doc["error"]["code"] == "missing_extra" and doc["error"]["details"]["extra"] == extra
    assert not (tmp_path / "merged").exists()


def _the_sdk_is_typed_and_light(light: Path, ci: LoregEnv, tmp_path: Path) -> None:
    code = f"""
import sys
from loreg.client import Client, Version
with Client({ci.extra["LOREG_URL"]!r}, {ci.extra["LOREG_TOKEN"]!r}, home=sys.argv[1]) as c:
    v = c.get_version("admin/light:v1")
    assert isinstance(v, Version) and v.number == 1 and v.labels == {{"ci": "light"}}, v
    assert [a.full_name for a in c.search("admin")] == ["admin/light"]
    got = c.pull("admin/light@1", sys.argv[2])
    assert got.version is not None and got.version.digest == v.digest
heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "fastapi", "sqlalchemy")]
assert not heavy, heavy
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [
            str(light / "bin" / "python"),
            "-c",
            code,
            str(tmp_path / "sdk-home"),
            str(tmp_path / "sdk-pulled"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert res.stdout.strip() == "ok", res.stderr
