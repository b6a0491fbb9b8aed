"""``validate`` jobs: a good adapter becomes ``valid`` with per-module norms; NaNs make it
``invalid`` with a report naming the tensor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from loreg.db import AdapterVersion
from loreg.worker.loop import Worker
from tests.factories import load_model
from tests.factories.adapter_kinds import build_kind
from tests.factories.worker_stack import Models, Stack


def _run(stack: Stack) -> None:
    Worker(stack.settings, sessions=stack.sessions, store=stack.store).run(once=True)


def test_valid_adapter_gets_norms(stack: Stack, models: Models) -> None:
    stack.register_base(models.base.path, "org/tiny")
    version = stack.push(models.adapter.path, "admin", "good", "org/tiny")
    _run(stack)
    with stack.sessions() as s:
        v = s.get(AdapterVersion, version.id)
        assert v is not None
        assert v.validation_state == "valid", v.validation_report
        report = v.validation_report or {}
    modules = report["modules"]
    assert modules and all(m["delta_norm"] > 0 for m in modules.values())
    # the norm is that of PEFT's own delta weight
    name = "model.layers.0.self_attn.q_proj"
    layer = models.adapter.model.base_model.model.model.layers[0].self_attn.q_proj
    want = float(layer.get_delta_weight("default").detach().norm())
    assert abs(modules[name]["delta_norm"] - want) < 1e-4 * max(1.0, want)


def test_nan_adapter_is_invalid(stack: Stack, models: Models, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(models.adapter.path, bad)
    tensors = load_file(str(bad / "adapter_model.safetensors"))
    key = sorted(k for k in tensors if "lora_B" in k)[0]
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(bad / "adapter_model.safetensors"), metadata={"format": "pt"})
    stack.register_base(models.base.path, "org/tiny")
    version = stack.push(bad, "admin", "bad", "org/tiny")
    _run(stack)
    with stack.sessions() as s:
        v = s.get(AdapterVersion, version.id)
        assert v is not None and v.validation_state == "invalid"
        problems = (v.validation_report or {})["problems"]
    assert any(p["code"] == "non_finite" and p["tensor"] == key for p in problems)


@pytest.mark.parametrize(
    "kind", ["moe-qwen3_moe", "moe-gpt_oss", "adalora-allocated", "tokens-tied"]
)
def test_adapter_kinds_are_valid_with_peft_norms(stack: Stack, tmp_path: Path, kind: str) -> None:
    """Expert parameters, AdaLoRA and trainable tokens validate as ``valid``; each LoRA
    module's delta norm is that of PEFT's own ``get_delta_weight`` (all experts at once)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    case = build_kind(kind, tmp_path / "in")
    stack.register_base(case.base.path, "org/kind")
    version = stack.push(case.adapter, "admin", "kind", "org/kind")
    _run(stack)
    with stack.sessions() as s:
        v = s.get(AdapterVersion, version.id)
        assert v is not None
        assert v.validation_state == "valid", v.validation_report
        modules = (v.validation_report or {})["modules"]
    peft = PeftModel.from_pretrained(load_model(case.base.path), str(case.adapter))
    want = {}
    for name, layer in peft.named_modules():
        if isinstance(layer, LoraLayer) and "default" in layer.lora_A:
            key = name.removeprefix("base_model.model.")
            # every concrete LoRA layer defines it; the LoraLayer base does not declare it
            delta = layer.get_delta_weight("default")  # type: ignore[attr-defined]
            want[key] = float(delta.detach().double().norm())
    assert set(modules) == set(want)
    for name, norm in want.items():
        assert abs(modules[name]["delta_norm"] - norm) < 1e-4 * max(1.0, norm), name
    if kind.startswith("moe"):
        experts = [m for m in modules.values() if "parameter" in m]
        assert {m["parameter"].rsplit(".", 1)[1] for m in experts} == {"gate_up_proj", "down_proj"}
        assert all(m["experts"] == 4 for m in experts)
