"""The layers of docs/design.md §2 are a contract ``lint-imports`` enforces: the tree keeps it,
and one import across a line in a copy of the tree breaks it, naming the contract."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so the copy under test is imported, not the installed package.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "loreg/formats/safetensors.py",
            "from loreg.db import models",
            "formats and merge are pure",
        ),
        ("loreg/merge/compute.py", "import httpx", "formats and merge are pure"),
        (
            "loreg/client/models.py",
            "from loreg.services import adapters",
            "The client and the serving plugins import nothing of the server",
        ),
        (
            "loreg/client/transfer.py",
            "import torch",
            "The client and the serving plugins import nothing of the server",
        ),
        (
            "loreg/services/audit.py",
            "from loreg.api import errors",
            "Each layer imports only the layers below it",
        ),
        (
            "loreg/db/models.py",
            "from loreg.services import permissions",
            "Each layer imports only the layers below it",
        ),
        (
            "loreg/errors.py",
            "from loreg import config",
            "Each layer imports only the layers below it",
        ),
        (
            "loreg/worker/loop.py",
            "from loreg.ui import routes",
            "The worker imports neither the API nor the web pages",
        ),
        (
            "loreg/storage/local.py",
            "from loreg.db import models",
            "The blob store knows nothing of the database",
        ),
    ],
)
def test_one_wrong_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "loreg", tree / "loreg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")

    done = lint_imports(tree)

    assert done.returncode != 0
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, done.stdout
    assert module.removesuffix(".py").replace("/", ".") in broken


def _shared_from_a_test_module(module: str) -> bool:
    """``tests.x.test_y`` or ``tests.x.conftest``: places tests must not import from."""
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def test_no_test_module_imports_another_or_a_conftest() -> None:
    """What tests share lives in tests/factories/ (or tests/fixtures/, as plugins)."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in names
                if _shared_from_a_test_module(name)
            ]
    assert not offenders, "\n".join(offenders)
