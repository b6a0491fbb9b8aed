"""README.md is about the product and runs as written: the blocks CI runs
(``scripts/readme_check.py``) are there and say what a newcomer needs; the Layout block
lists every top-level folder; no words from outside the repository."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _checker() -> ModuleType:
    path = ROOT / "scripts" / "readme_check.py"
    spec = importlib.util.spec_from_file_location("readme_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _blocks(stage: str) -> str:
    return "".join(b.text for b in _checker().extract(README) if b.stage == stage)


def test_the_readme_marks_every_block_ci_runs() -> None:
    stages = [b.stage for b in _checker().extract(README)]
    assert set(stages) == {"install", "quickstart", "serve", "by-hand"}


def test_install_is_runtime_only_and_says_where_loreg_lives() -> None:
    install = _blocks("install")
    assert "pip install" in install and "[test]" not in install
    assert "loreg serve" not in install  # the install command ends; serving is its own step
    assert ".venv/bin/" in README and "source .venv/bin/activate" in README


def test_quickstart_and_by_hand_use_the_same_folders_and_both_merges() -> None:
    quickstart = _blocks("quickstart")
    m = re.search(r"examples/quickstart\.sh (\S+)", quickstart)
    assert m, "the quickstart block names its folder, so the by-hand block can use it"
    folder = m.group(1).rstrip("/")
    by_hand = _blocks("by-hand")
    assert f"{folder}/base" in by_hand and f"{folder}/adapter" in by_hand
    merges = _checker().merges(_checker().extract(README))  # what CI checks after the run
    assert any(local for _, local in merges)  # on this machine
    assert any(not local for _, local in merges)  # on the registry's worker
    # a second terminal is a new shell: it activates the venv itself
    assert by_hand.startswith("source .venv/bin/activate")
    assert "loreg serve" in _blocks("serve") and "second terminal" in README


def test_layout_lists_every_top_level_folder() -> None:
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    folders = {p.split("/")[0] for p in tracked if "/" in p}
    layout = README[README.index("## Layout") :]
    layout = layout[: layout.index("\n## ")]
    for folder in sorted(folders):
        assert re.search(rf"^{re.escape(folder)}/", layout, re.MULTILINE), folder
    packages = {p.split("/")[1] for p in tracked if p.startswith("loreg/") and p.count("/") > 1}
    for package in sorted(packages - {"__pycache__"}):
        assert f"loreg/{package}/" in layout, package


@pytest.mark.parametrize("word", [r"\.\./shared", r"\bissues?\b", r"\bsessions?\b", "the lead"])
def test_the_readme_speaks_of_the_product_only(word: str) -> None:
    assert not re.search(word, README, re.IGNORECASE), word


def test_extract_refuses_what_it_cannot_run() -> None:
    rc = _checker()
    good = "\n".join(f"<!-- readme-check: {s} -->\n```bash\necho {s}\n```" for s in rc.STAGES)
    assert [b.text for b in rc.extract(good)] == [f"echo {s}\n" for s in rc.STAGES]
    with pytest.raises(rc.ReadmeError, match="marks no block for: serve"):
        rc.extract(good.replace("readme-check: serve", "not a marker"))
    with pytest.raises(rc.ReadmeError, match="unknown readme-check stage"):
        rc.extract(good + "\n<!-- readme-check: deploy -->\n```bash\nx\n```")
    with pytest.raises(rc.ReadmeError, match="not followed by a fenced code block"):
        rc.extract(good + "\n<!-- readme-check: install -->\nsome text")
    with pytest.raises(rc.ReadmeError, match="never closed"):
        rc.extract(good + "\n<!-- readme-check: install -->\n```bash\nx\n")
    # blocks of one stage run in README order, each line as written
    two = good + "\n<!-- readme-check: install -->\n\n```sh\npip install -e '.[server]'\n```\n"
    assert [b.text for b in rc.extract(two) if b.stage == "install"] == [
        "echo install\n",
        "pip install -e '.[server]'\n",
    ]
