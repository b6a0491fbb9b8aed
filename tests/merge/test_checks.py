"""Tensor checks of an adapter: norms against dense deltas and PEFT's own, and each kind of
problem found in real PEFT adapters broken on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from loreg.merge.checks import check_tensors, delta_norm, experts_delta_norm
from loreg.merge.sources import AdapterSource
from tests.factories import TinyAdapter, make_llama, make_lora_adapter


def test_delta_norm_matches_dense() -> None:
    a, b = torch.randn(4, 16), torch.randn(8, 4)
    assert abs(delta_norm(a, b, 0.5) - float((0.5 * b @ a).norm())) < 1e-4


def test_experts_delta_norm_matches_dense_per_expert() -> None:
    experts, r, d_in, d_out = 3, 2, 5, 7
    a, b = torch.randn(experts * r, d_in), torch.randn(d_out, r * experts)
    per_expert = b.reshape(d_out, r, experts)
    dense = torch.stack([per_expert[:, :, e] @ a[e * r : (e + 1) * r] for e in range(experts)])
    want = float((2.0 * dense).norm())
    assert abs(experts_delta_norm(a, b, 2.0, experts) - want) < 1e-4 * want


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> TinyAdapter:
    root = tmp_path_factory.mktemp("checks")
    return make_lora_adapter(make_llama(root / "base"), root / "adapter", r=4)


def _with_a_nan(adapter: TinyAdapter, dest: Path) -> tuple[Path, str]:
    """A copy of the adapter with a NaN in one lora_B tensor."""
    shutil.copytree(adapter.path, dest)
    weights = dest / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    key = sorted(k for k in tensors if "lora_B" in k)[0]
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return dest, key


def test_a_good_adapter_has_the_norms_of_peft_deltas(adapter: TinyAdapter) -> None:
    with AdapterSource(adapter.path) as source:
        found = check_tensors(source)
    assert found.problems == []
    name = "model.layers.0.self_attn.q_proj"
    layer = adapter.model.base_model.model.model.layers[0].self_attn.q_proj
    want = float(layer.get_delta_weight("default").detach().norm())
    assert abs(found.stats[name]["delta_norm"] - want) < 1e-4 * max(1.0, want)
    assert found.stats[name]["r"] == 4 and found.stats[name]["kind"] == "linear"


def test_a_nan_is_named_with_its_tensor(adapter: TinyAdapter, tmp_path: Path) -> None:
    folder, key = _with_a_nan(adapter, tmp_path / "nan")
    with AdapterSource(folder) as source:
        found = check_tensors(source)
    assert [(p["code"], p["tensor"], p["count"]) for p in found.problems] == [
        ("non_finite", key, 1)
    ]


def test_ranks_that_disagree_with_the_config_are_named(
    adapter: TinyAdapter, tmp_path: Path
) -> None:
    folder = tmp_path / "r8"
    shutil.copytree(adapter.path, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config.update(r=8, lora_alpha=16)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with AdapterSource(folder) as source:
        found = check_tensors(source)
    assert {(p["code"], p["expected"], tuple(p["found"])) for p in found.problems} == {
        ("rank_mismatch", 8, (4, 4))
    }
    assert {p["module"] for p in found.problems} == set(source.desc.modules)
    assert found.stats == {}
