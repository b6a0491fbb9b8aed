"""Export writes a PEFT folder that PEFT loads, cast as asked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from loreg.merge.export import export_adapter
from tests.factories.adapter_kinds import build_kind
from tests.factories.merge_inputs import load_peft, peft_merged_checkpoint
from tests.factories.tiny_models import make_llama, make_lora_adapter


def test_export_casts_and_loads(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter", use_dora=True)
    result = export_adapter(adapter.path, tmp_path / "out", dtype="bfloat16")
    src = load_file(adapter.path / "adapter_model.safetensors")
    out = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert set(out) == set(src)
    for key, t in out.items():
        assert t.dtype == torch.bfloat16
        assert torch.equal(t, src[key].to(torch.bfloat16))
    assert (tmp_path / "out" / "adapter_config.json").read_bytes() == (
        adapter.path / "adapter_config.json"
    ).read_bytes()
    for f in result.files:
        assert hashlib.sha256((tmp_path / "out" / f.path).read_bytes()).hexdigest() == f.sha256
    load_peft(base, [tmp_path / "out"])  # PEFT accepts it


def test_export_without_cast_is_byte_identical_tensors(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter")
    export_adapter(adapter.path, tmp_path / "out")
    src = load_file(adapter.path / "adapter_model.safetensors")
    out = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert all(torch.equal(out[k], src[k]) for k in src)


def test_export_keeps_safetensors_metadata(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter")
    weights = adapter.path / "adapter_model.safetensors"
    save_file(load_file(weights), weights, metadata={"format": "pt", "run": "r7"})
    export_adapter(adapter.path, tmp_path / "out", dtype="float16")
    with safe_open(tmp_path / "out" / "adapter_model.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt", "run": "r7"}


@pytest.mark.parametrize(
    "kind",
    [
        "moe-qwen3_moe",
        "tokens-grown-tied",
        "tokens-peft-type-tied",
        "adalora-allocated",
        "bias-all",
    ],
)
def test_export_of_adapter_kinds_loads_in_peft(tmp_path: Path, kind: str) -> None:
    """The exported folder is the same adapter to PEFT: merge_and_unload() gives the same
    model from it as from the original."""
    case = build_kind(kind, tmp_path / "in")
    export_adapter(case.adapter, tmp_path / "out")
    src = load_file(case.adapter / "adapter_model.safetensors")
    out = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert set(out) == set(src) and all(torch.equal(out[k], src[k]) for k in src)
    _, want = peft_merged_checkpoint(case.base, case.adapter, tmp_path / "a", vocab=case.vocab)
    _, got = peft_merged_checkpoint(case.base, tmp_path / "out", tmp_path / "b", vocab=case.vocab)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
