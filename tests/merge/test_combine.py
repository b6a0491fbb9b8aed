"""Combined adapters: cat/linear are exact sums, the rest the best rank-k of merge_utils."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft.utils import merge_utils

from loreg.errors import Incompatible
from loreg.formats.peft import read_adapter
from loreg.merge.combine import combine_adapters
from loreg.merge.methods import tensor_seed
from loreg.merge.options import Method, MethodOptions
from tests.factories.adapter_kinds import build_kind
from tests.factories.merge_inputs import load_peft, peft_deltas
from tests.factories.tiny_models import (
    TinyModel,
    make_adalora_adapter,
    make_gpt2,
    make_llama,
    make_lora_adapter,
)

WEIGHTS = [0.7, -0.4]


def _pair(tmp_path: Path, kind: str = "llama") -> tuple[TinyModel, list[Path]]:
    if kind == "gpt2":
        base = make_gpt2(tmp_path / "base")
        a0 = make_lora_adapter(base, tmp_path / "a0", r=4, seed=1, use_rslora=True)
        a1 = make_lora_adapter(base, tmp_path / "a1", r=2, seed=2, target_modules=["c_attn"])
    else:
        base = make_llama(tmp_path / "base")
        a0 = make_lora_adapter(
            base, tmp_path / "a0", r=4, seed=1, use_rslora=True, rank_pattern={"q_proj": 3}
        )
        a1 = make_lora_adapter(
            base, tmp_path / "a1", r=2, lora_alpha=5, seed=2, target_modules=["q_proj", "up_proj"]
        )
    return base, [a0.path, a1.path]


def _reference(
    base: TinyModel, adapters: list[Path]
) -> dict[str, list[tuple[float, torch.Tensor]]]:
    deltas = peft_deltas(load_peft(base, adapters), ["a0", "a1"])
    return {
        name: [(WEIGHTS[int(n[1])], d) for n, d in sorted(by.items())]
        for name, by in deltas.items()
    }


def _combined_deltas(base: TinyModel, out: Path) -> dict[str, torch.Tensor]:
    deltas = peft_deltas(load_peft(base, [out]), ["a0"])
    return {name: by["a0"] for name, by in deltas.items()}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("method", ["cat", "linear"])
def test_cat_and_linear_are_exact_weighted_sums(tmp_path: Path, kind: str, method: Method) -> None:
    base, adapters = _pair(tmp_path, kind)
    result = combine_adapters(
        list(zip(adapters, WEIGHTS, strict=True)),
        tmp_path / "out",
        options=MethodOptions(method=method),
        device="cpu",
    )
    assert result.exact
    ref = _reference(base, adapters)
    got = _combined_deltas(base, tmp_path / "out")
    assert set(got) == set(ref)
    for name, parts in ref.items():
        want = sum(w * d for w, d in parts)
        torch.testing.assert_close(got[name], want, rtol=1e-5, atol=1e-6, msg=name)
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["use_rslora"] is False
    module = "model.layers.0.self_attn.q_proj" if kind == "llama" else "transformer.h.0.attn.c_attn"
    assert result.ranks[module] == (3 + 2 if kind == "llama" else 4 + 2)


@pytest.mark.parametrize("method", ["svd", "ties", "dare_linear", "dare_ties", "magnitude_prune"])
def test_other_methods_are_best_rank_k_of_merge_utils(tmp_path: Path, method: Method) -> None:
    base, adapters = _pair(tmp_path)
    density = None if method == "svd" else 0.6
    combine_adapters(
        list(zip(adapters, WEIGHTS, strict=True)),
        tmp_path / "out",
        options=MethodOptions(method=method, density=density, svd_rank=3, seed=11),
        device="cpu",
    )
    ref = _reference(base, adapters)
    got = _combined_deltas(base, tmp_path / "out")
    for name, parts in ref.items():
        ws = torch.tensor([w for w, _ in parts])
        ds = [d for _, d in parts]
        if method == "svd":
            dense = merge_utils.task_arithmetic(ds, ws)
        else:
            torch.manual_seed(tensor_seed(11, name))
            dense = getattr(merge_utils, method)(ds, ws, 0.6)
        u, s, vh = torch.linalg.svd(dense, full_matrices=False)
        best = u[:, :3] @ torch.diag(s[:3]) @ vh[:3]
        torch.testing.assert_close(got[name], best, rtol=1e-4, atol=1e-5, msg=name)


def test_dora_is_refused_and_nothing_written(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    a0 = make_lora_adapter(base, tmp_path / "a0", use_dora=True)
    a1 = make_lora_adapter(base, tmp_path / "a1", seed=3)
    with pytest.raises(Incompatible):
        combine_adapters([(a0.path, 1.0), (a1.path, 1.0)], tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["cat", "svd"])
def test_adalora_combines_into_plain_lora(tmp_path: Path, method: Method) -> None:
    """AdaLoRA's singular values and its alpha / init_r scale are folded into a plain LoRA
    adapter: its deltas are PEFT's AdaLoRA deltas, weighted; its config is LoRA's."""
    base = make_llama(tmp_path / "base")
    ada = make_adalora_adapter(
        base, tmp_path / "ada", masks={"q_proj": [True, False, True, True, False, False]}
    )
    want = {n: by["a0"] for n, by in peft_deltas(load_peft(base, [ada.path]), ["a0"]).items()}
    combine_adapters(
        [(ada.path, 0.5)],
        tmp_path / "out",
        device="cpu",
        options=MethodOptions(method=method, svd_rank=6),
    )
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and "init_r" not in config and "tinit" not in config
    desc = read_adapter(tmp_path / "out")
    assert desc.option_findings == () and desc.unmapped_keys == ()
    got = _combined_deltas(base, tmp_path / "out")
    assert set(got) == set(want)
    for name, delta in want.items():
        torch.testing.assert_close(got[name], 0.5 * delta, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("kind", ["moe-gpt_oss", "tokens-untied"])
def test_kinds_combine_does_not_carry_are_refused(tmp_path: Path, kind: str) -> None:
    case = build_kind(kind, tmp_path / "in")
    with pytest.raises(Incompatible, match="merge it into the base instead"):
        combine_adapters([(case.adapter, 1.0)], tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
