"""LoRA on parameters: finding a fused parameter's tensors in a checkpoint with
transformers' own conversion rules, and binding PEFT's nested wrappers to parameters.

transformers is the oracle: the fused parameter loreg assembles from the checkpoint's
tensors equals the parameter transformers builds when it loads the same checkpoint.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loreg.formats.base import read_manifest
from loreg.formats.compat import bind, check_compatibility
from loreg.formats.peft import read_adapter
from loreg.formats.targets import rule_set_for, stored_parameters
from loreg.merge.stream import merge_checkpoint
from tests.factories import (
    MOE_FAMILIES,
    MOE_TARGET_PARAMETERS,
    load_model,
    make_llama,
    make_lora_adapter,
    make_moe,
)
from tests.factories.merge_inputs import peft_merged_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_rules_file_matches_installed_transformers() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "checkpoint_rules.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_rule_sets_by_model_type() -> None:
    assert rule_set_for("qwen3_moe") == rule_set_for("qwen2_moe") == "qwen2_moe"
    assert rule_set_for("mixtral") == "mixtral"
    assert rule_set_for("gpt_oss") is None  # stores its experts fused: nothing to convert
    assert rule_set_for(None) is None


def _assembled(base: Path, stored: object) -> torch.Tensor:
    tensors: dict[str, torch.Tensor] = {}
    for f in base.glob("*.safetensors"):
        tensors.update(load_file(str(f)))
    pieces = stored.pieces  # type: ignore[attr-defined]
    if pieces[0].expert is None:
        return tensors[pieces[0].tensor]
    experts = max(p.expert for p in pieces) + 1
    rows = [[tensors[p.tensor] for p in pieces if p.expert == e] for e in range(experts)]
    return torch.stack([torch.cat(r, dim=0) for r in rows])


@pytest.mark.parametrize("with_model_type", [True, False])
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_fused_parameters_equal_what_transformers_loads(
    tmp_path: Path, family: str, with_model_type: bool
) -> None:
    base = make_moe(tmp_path / "base", family)
    manifest = read_manifest(base.path)
    assert manifest.model_type == family
    if not with_model_type:  # a base registered without its config.json
        manifest = replace(manifest, model_type=None)
    model = load_model(base.path)
    names = [n for n, p in model.named_parameters() if p.dim() == 3 and ".experts." in n]
    assert names
    found, missing = stored_parameters(manifest, names)
    assert not missing and set(found) == set(names)
    params = dict(model.named_parameters())
    for name in names:
        assert found[name].shape == tuple(params[name].shape), name
        assert torch.equal(_assembled(base.path, found[name]), params[name].detach()), name


def test_wrappers_bound_by_shape(tmp_path: Path) -> None:
    base = make_moe(tmp_path / "base", "qwen3_moe")
    adapter = make_lora_adapter(
        base,
        tmp_path / "adapter",
        target_modules=["q_proj"],
        target_parameters=MOE_TARGET_PARAMETERS["qwen3_moe"],
        r=2,
    )
    binding = bind(read_adapter(adapter.path), read_manifest(base.path))
    assert not binding.problems
    got = {
        bp.module.name: (bp.parameter.rsplit(".", 1)[1], bp.swapped, bp.num_experts)
        for bp in binding.bound
    }
    # PEFT nests the wrappers in the order the experts module registered its parameters
    assert got["model.layers.0.mlp.experts.base_layer"] == ("gate_up_proj", True, 4)
    assert got["model.layers.0.mlp.experts"] == ("down_proj", True, 4)


@pytest.mark.parametrize(
    ("family", "expert_size", "targets"),
    [
        ("qwen3_moe", 16, ["mlp.experts.gate_up_proj"]),  # [E, 32, 32], stored per expert
        ("gpt_oss", 32, MOE_TARGET_PARAMETERS["gpt_oss"]),
    ],  # down [E, 32, 32] next to gate_up
)
def test_square_expert_parameters_settled_by_the_checkpoint(
    tmp_path: Path, family: str, expert_size: int, targets: list[str]
) -> None:
    """A LoRA on a square parameter fits it stored [E, out, in] and [E, in, out] alike; the
    per-expert checkpoint, or the module's other parameter, tells which, as PEFT sees it."""
    base = make_moe(tmp_path / "base", family, expert_size=expert_size)
    adapter = make_lora_adapter(
        base, tmp_path / "adapter", target_modules=["q_proj"], target_parameters=targets
    )
    report = check_compatibility(read_adapter(adapter.path), read_manifest(base.path))
    assert report.ok, report.format()
    merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "out", device="cpu")
    got: dict[str, torch.Tensor] = {}
    for f in (tmp_path / "out").glob("*.safetensors"):
        got.update(load_file(str(f)))
    _, want = peft_merged_checkpoint(base, adapter.path, tmp_path / "peft")
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_a_lone_square_fused_parameter_is_refused(tmp_path: Path) -> None:
    """gpt-oss' down_proj [E, 32, 32] alone, stored fused: nothing tells the layout."""
    base = make_moe(tmp_path / "base", "gpt_oss", expert_size=32)
    adapter = make_lora_adapter(
        base,
        tmp_path / "adapter",
        target_modules=["q_proj"],
        target_parameters=["mlp.experts.down_proj"],
    )
    report = check_compatibility(read_adapter(adapter.path), read_manifest(base.path))
    assert {f.code for f in report.problems} == {"ambiguous_parameter"}, report.format()
    assert "refuses rather than guess" in report.problems[0].message


def test_expert_adapter_on_a_dense_base(tmp_path: Path) -> None:
    moe = make_moe(tmp_path / "moe", "qwen3_moe")
    adapter = make_lora_adapter(
        moe,
        tmp_path / "adapter",
        target_modules=["q_proj"],
        target_parameters=MOE_TARGET_PARAMETERS["qwen3_moe"],
    )
    dense = make_llama(tmp_path / "dense")
    report = check_compatibility(read_adapter(adapter.path), read_manifest(dense.path))
    codes = {f.code for f in report.problems}
    assert "missing_base_module" in codes, report.format()
    assert "mlp.experts.gate_up_proj" in report.format()


def test_other_expert_count_is_a_shape_mismatch(tmp_path: Path) -> None:
    four = make_moe(tmp_path / "four", "gpt_oss")
    adapter = make_lora_adapter(
        four,
        tmp_path / "adapter",
        target_modules=["q_proj"],
        target_parameters=MOE_TARGET_PARAMETERS["gpt_oss"],
    )
    eight = make_moe(tmp_path / "eight", "gpt_oss", num_experts=8)
    report = check_compatibility(read_adapter(adapter.path), read_manifest(eight.path))
    assert {f.code for f in report.problems} == {"shape_mismatch"}, report.format()
