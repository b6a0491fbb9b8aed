"""examples/quickstart.sh runs from nothing but the installed package."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.harness import BIN

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "quickstart.sh"


@pytest.mark.slow
def test_quickstart_script(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "qs"
    p = subprocess.run(
        ["bash", str(SCRIPT), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    # it says where its inputs and both merges are (the README's "by hand" block uses them)
    for label, folder in (
        ("base model folder", "base"),
        ("adapter folder", "adapter"),
        ("merged by the registry", "merged"),
        ("merged on this machine", "merged-local"),
    ):
        assert f"{label}:" in p.stdout and f"{work}/{folder}\n" in p.stdout, label
    assert "tensors, identical" in p.stdout  # the server merge equals the --local one
    for folder in ("merged", "merged-local"):
        assert (work / folder / "config.json").exists()
        assert list((work / folder).glob("*.safetensors"))
    # the server was stopped on the way out
    assert "serving at" in (work / "serve.log").read_text()

    from tests.factories.tiny_models import load_model

    load_model(work / "merged")  # transformers loads the result directly


@pytest.mark.slow
def test_quickstart_with_runtime_dependencies_only(tmp_path: Path) -> None:
    """Without the test extras (transformers, peft, numpy) the torch-only builder writes the
    same kind of files and every step, both merges included, still completes: in the script,
    the server, its worker and the CLI."""
    shim = tmp_path / "shim"
    for name in ("peft", "transformers", "numpy"):
        (shim / name).mkdir(parents=True)
        # as where it is not installed (torch catches exactly this class)
        (shim / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {name!r}'!r}, name={name!r})\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(shim)
    work = tmp_path / "qs"
    p = subprocess.run(
        ["bash", str(SCRIPT), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "built with torch alone" in p.stdout
    assert "tensors, identical" in p.stdout
    assert (work / "merged" / "config.json").exists()
    assert (work / "merged-local" / "config.json").exists()
    assert "numpy" not in p.stderr.lower()  # no warning about it either


def test_quickstart_finds_the_clones_venv_or_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env["PATH"] = "/usr/bin:/bin"  # no loreg on PATH
    copy = tmp_path / "clone" / "examples"
    copy.mkdir(parents=True)
    (copy / "quickstart.sh").write_text(SCRIPT.read_text())
    p = subprocess.run(
        ["bash", str(copy / "quickstart.sh"), str(tmp_path / "qs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1
    assert "source .venv/bin/activate" in p.stderr and "LOREG=" in p.stderr
    assert not (tmp_path / "qs").exists()
