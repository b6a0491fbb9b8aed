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
    p = subprocess.run(["bash", str(SCRIPT), str(work)], env=env, capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert f"merged model: {work}/merged" in p.stdout
    assert (work / "merged" / "config.json").exists()
    assert list((work / "merged").glob("*.safetensors"))
    # the server was stopped on the way out
    assert "serving at" in (work / "serve.log").read_text()

    from tests.factories.tiny_models import load_model

    load_model(work / "merged")  # transformers loads the result directly


@pytest.mark.slow
def test_quickstart_without_transformers_and_peft(tmp_path: Path) -> None:
    """The torch-only builder writes the same kind of files; the flow still completes."""
    shim = tmp_path / "shim"
    for name in ("peft", "transformers"):
        (shim / name).mkdir(parents=True)
        (shim / name / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(shim)
    work = tmp_path / "qs"
    p = subprocess.run(["bash", str(SCRIPT), str(work)], env=env, capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "built with torch alone" in p.stdout
    assert (work / "merged" / "config.json").exists()
