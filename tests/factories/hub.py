"""The real ``huggingface_hub`` client pointed at a live registry, and adapter folders as a
trainer would publish them (``base_model_name_or_path`` naming a registered base).

In-process tests pass ``endpoint=`` and ``token=`` explicitly and turn Xet off through the
same switch ``HF_HUB_DISABLE_XET=1`` sets (``huggingface_hub.constants``); tests that must
run unmodified code (PEFT, transformers' Trainer) start a subprocess with the environment a
user would set: ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_DISABLE_XET=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.factories.pushes import register_base
from tests.factories.tiny_models import TinyModel
from tests.fixtures.api import RegistryServer, unique_name


def hf_api(server: RegistryServer, token: str | None) -> Any:
    """An ``HfApi`` on the registry (``token=False`` sends none)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=server.base_url, token=token if token is not None else False)


def register_named_base(server: RegistryServer, model: TinyModel) -> str:
    """Register ``model`` under a fresh Hub-style name; returns the name."""
    name = f"acme/{unique_name('tiny')}"
    r = register_base(server.admin, model, name)
    assert r.status_code == 201, r.text
    return name


def publishable(adapter_dir: Path, dest: Path, base_name: str, **extra_files: bytes) -> Path:
    """A copy of an adapter folder whose config names ``base_name`` (as one trained from the
    base loaded by that repo id has), plus any extra files."""
    shutil.copytree(adapter_dir, dest)
    config_path = dest / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    for rel, data in extra_files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest


def tree_digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (byte-identity checks)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and ".cache" not in p.relative_to(folder).parts:
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def hub_env(server: RegistryServer, token: str, home: Path) -> dict[str, str]:
    """The environment a user sets to point unmodified Hugging Face tools at loreg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=server.base_url,
        HF_TOKEN=token,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run_script(
    code: str, env: dict[str, str], cwd: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with ``env`` (the assertion shows its output)."""
    repo_root = Path(__file__).resolve().parents[2]
    env = {**env, "PYTHONPATH": str(repo_root)}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result
