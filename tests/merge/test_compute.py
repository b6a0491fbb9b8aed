"""One planned tensor's arithmetic equals PEFT's, on each path the merger takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft.utils import merge_utils
from safetensors.torch import load_file

from loreg.merge.compute import TensorMerger
from loreg.merge.options import MethodOptions
from loreg.merge.plan import TensorPlan, check_sources, plan_merge
from loreg.merge.sources import AdapterSource, open_base
from tests.factories import TinyModel, make_bert_seq_cls, make_gpt2, make_llama, make_lora_adapter
from tests.factories.merge_inputs import load_peft, peft_deltas, peft_merged_state

CPU = torch.device("cpu")


def _computed(
    base: TinyModel, adapters: list[Path], weights: list[float], options: MethodOptions
) -> dict[str, torch.Tensor]:
    """What the merger computes for every tensor the plan marks as computed."""
    checkpoint = open_base(base.path)
    sources = [AdapterSource(p) for p in adapters]
    plans: list[TensorPlan] = plan_merge(
        checkpoint, sources, None, check_sources(checkpoint, sources), weights, options.method
    )
    originals = load_file(str(base.path / "model.safetensors"))
    merger = TensorMerger(sources, weights, options, CPU)
    try:
        return {
            p.info.name: merger.compute(p, originals[p.info.name].clone())
            for p in plans
            if p.computed
        }
    finally:
        for src in sources:
            src.close()


CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "blocked-sum": (make_llama, {}),
    "dora-whole-tensor": (make_llama, {"use_dora": True}),
    "embedding": (make_llama, {"target_modules": ["embed_tokens", "q_proj"]}),
    "conv1d-fan-in-fan-out": (make_gpt2, {}),
    "bias-and-saved-module": (make_bert_seq_cls, {"lora_bias": True}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_adapter_equals_merge_and_unload(tmp_path: Path, case: str) -> None:
    make_base, kwargs = CASES[case]
    base = make_base(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter", **kwargs).path
    got = _computed(base, [adapter], [1.0], MethodOptions())
    want = peft_merged_state(base, adapter)
    assert got
    for name, t in got.items():
        torch.testing.assert_close(t, want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_two_adapters_with_ties_equal_merge_utils(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    adapters = [make_lora_adapter(base, tmp_path / f"a{i}", seed=i).path for i in range(2)]
    weights = [0.7, -0.4]
    options = MethodOptions(method="ties", density=0.5)
    got = _computed(base, adapters, weights, options)
    deltas = peft_deltas(load_peft(base, adapters), ["a0", "a1"])
    originals = load_file(str(base.path / "model.safetensors"))
    assert set(got) == set(deltas)
    for name, by in deltas.items():
        ties = merge_utils.ties([by["a0"], by["a1"]], torch.tensor(weights), 0.5)
        torch.testing.assert_close(
            got[name], originals[name] + ties, rtol=1e-5, atol=1e-6, msg=name
        )
