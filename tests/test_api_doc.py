"""docs/api.md runs as written: its bash blocks, in order, against a real ``loreg serve``
(curl and jq only, plus ``loreg base manifest``), then the merged model it downloaded is
checked against PEFT's own merge."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import torch

from tests.cli.harness import BIN, LoregEnv
from tests.factories.tiny_models import load_model, make_llama, make_lora_adapter

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.DOTALL)


def test_api_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = bash_blocks(DOC.read_text())
    assert len(blocks) >= 8
    work = tmp_path / "work"
    work.mkdir()
    base = make_llama(work / "base")
    adapter = make_lora_adapter(base, work / "adapter", seed=3)
    env = LoregEnv(home=tmp_path / "home")
    env.start_server()
    try:
        token = env.json("token", "create", "ci", "--scope", "write")["token"]
        script = "\n".join(blocks)
        run_env = {
            **env.env(),
            "LOREG_URL": env.url,
            "TOKEN": token,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=work,
            env=run_env,
            text=True,
            capture_output=True,
            timeout=600,
        )
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    finally:
        env.stop_all()
    out = done.stdout
    assert "signed in as admin (scope write)" in out
    assert '"has_weights": true' in out and '"admin/support-bot@1"' in out
    assert "succeeded 100%" in out
    # what curl downloaded is the merge PEFT computes
    expected = adapter.model.merge_and_unload().state_dict()
    got = load_model(work / "merged").state_dict()
    changed = 0
    for name, tensor in got.items():
        want = expected[name].to(torch.bfloat16).float()
        torch.testing.assert_close(tensor.float(), want, rtol=2e-2, atol=2e-2)
        changed += int(not torch.equal(tensor, base.model.state_dict()[name].to(tensor.dtype)))
    assert changed >= 8
