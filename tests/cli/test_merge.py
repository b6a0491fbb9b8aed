"""``loreg merge --local``: the engine from the command line, with loreg's exit codes.

(The server mode, without ``--local``, is tested with the client.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.factories.adapter_kinds import build_kind
from tests.factories.merge_inputs import peft_merged_checkpoint
from tests.factories.tiny_models import load_model, make_llama, make_lora_adapter


def _loreg(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from loreg.cli.main import main; sys.argv[0] = 'loreg'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_local_merge_json_and_usage_errors(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    a0 = make_lora_adapter(base, tmp_path / "a0")
    a1 = make_lora_adapter(base, tmp_path / "a1", seed=1)
    out = tmp_path / "out"
    done = _loreg(
        "merge",
        str(a0.path),
        str(a1.path),
        "--base",
        str(base.path),
        "-o",
        str(out),
        "--local",
        "--weights",
        "0.5,0.5",
        "--method",
        "ties",
        "--density",
        "0.5",
        "--dtype",
        "bfloat16",
        "--device",
        "cpu",
        "--shard-size",
        "20KB",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["base_fingerprint"].startswith("sha256:")
    names = {f["path"] for f in doc["files"]}
    assert "model.safetensors.index.json" in names and "config.json" in names
    assert sorted(p.name for p in out.iterdir()) == sorted(names)

    bad = _loreg(
        "merge",
        str(a0.path),
        "--base",
        str(base.path),
        "-o",
        str(tmp_path / "y"),
        "--local",
        "--weights",
        "1,2",
    )
    assert bad.returncode == 2

    wrong = _loreg(
        "merge",
        str(a0.path),
        "--base",
        str(base.path),
        "-o",
        str(tmp_path / "z"),
        "--local",
        "--expected-fingerprint",
        "sha256:" + "0" * 64,
        "--json",
    )
    assert wrong.returncode == 3, wrong.stdout + wrong.stderr
    assert json.loads(wrong.stdout)["error"]["code"] == "fingerprint_mismatch"
    assert not (tmp_path / "z").exists()


CLI_KINDS = [
    "moe-qwen3_moe",
    "moe-mixtral",
    "moe-gpt_oss",
    "moe-llama4_text",
    "tokens-tied",
    "tokens-per-layer-untied",
    "tokens-grown-tied",
    "tokens-peft-type-tied",
    "adalora-allocated",
    "bias-all",
]


@pytest.mark.parametrize("kind", CLI_KINDS)
def test_local_merge_of_adapter_kinds_equals_peft(tmp_path: Path, kind: str) -> None:
    """``loreg validate`` accepts each kind and ``loreg merge --local`` writes PEFT's
    merge_and_unload(): every tensor, and the logits after from_pretrained."""
    case = build_kind(kind, tmp_path / "in")
    checked = _loreg("validate", str(case.adapter), "--base", str(case.base.path), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["compatible"] is True
    out = tmp_path / "out"
    done = _loreg(
        "merge",
        str(case.adapter),
        "--base",
        str(case.base.path),
        "-o",
        str(out),
        "--local",
        "--device",
        "cpu",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    got: dict[str, torch.Tensor] = {}
    for f in sorted(out.glob("*.safetensors")):
        got.update(load_file(str(f)))
    peft_model, want = peft_merged_checkpoint(
        case.base, case.adapter, tmp_path / "peft", vocab=case.vocab
    )
    assert set(got) == set(want)
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, want[name], rtol=1e-5, atol=1e-6, msg=name)
    ids = torch.tensor([list(case.input_ids)])
    with torch.no_grad():
        torch.testing.assert_close(
            load_model(out)(input_ids=ids).logits,
            peft_model(input_ids=ids).logits,
            rtol=1e-5,
            atol=1e-5,
        )
