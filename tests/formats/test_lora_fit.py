"""One LoRA module against its base weight, on real PEFT adapters and real (tiny) bases."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from loreg.formats.base import read_manifest
from loreg.formats.base_lookup import BaseLookup
from loreg.formats.lora_fit import check_lora
from loreg.formats.peft import read_adapter
from loreg.formats.report import CompatibilityReport
from loreg.formats.types import AdapterDescription
from tests.factories import TinyModel, make_gpt2, make_llama, make_lora_adapter


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lora_fit")


def _check(
    adapter: AdapterDescription, base: Path, module: str | None = None, **change: Any
) -> CompatibilityReport:
    """``check_lora`` on every module (or one, changed as given) against ``base``."""
    lookup = BaseLookup(read_manifest(base))
    report = CompatibilityReport()
    for mod in adapter.modules.values():
        if module is None or mod.name == module:
            check_lora(dataclasses.replace(mod, **change), adapter, lookup, report)
    return report


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"use_dora": True},
        {"lora_bias": True, "use_rslora": True},
        {"target_modules": ["embed_tokens", "q_proj", "up_proj"], "rank_pattern": {"up_proj": 2}},
    ],
)
def test_every_module_of_a_real_adapter_fits_its_base(
    tiny_llama: TinyModel, root: Path, kwargs: dict[str, Any]
) -> None:
    name = "-".join(sorted(kwargs)) or "plain"
    adapter = read_adapter(make_lora_adapter(tiny_llama, root / name, **kwargs).path)
    report = _check(adapter, tiny_llama.path)
    assert report.problems == report.warnings == report.notes == []


def test_a_narrower_base_names_both_shapes(tiny_llama: TinyModel, root: Path) -> None:
    adapter = read_adapter(make_lora_adapter(tiny_llama, root / "dora", use_dora=True).path)
    wide = make_llama(root / "llama-h64", hidden_size=64)
    report = _check(adapter, wide.path, "model.layers.0.self_attn.q_proj")
    a = next(p for p in report.problems if "lora_A" in p.message)
    assert (a.code, a.expected, a.found) == ("shape_mismatch", (4, 64), (4, 32))
    assert "[64, 64]" in a.message and "layout [r, in] / [out, r]" in a.message
    assert any("DoRA magnitude vector is [32]" in p.message for p in report.problems)


def test_a_rank_the_tensors_do_not_have(tiny_llama: TinyModel, root: Path) -> None:
    adapter = read_adapter(make_lora_adapter(tiny_llama, root / "rank").path)
    report = _check(adapter, tiny_llama.path, "model.layers.0.self_attn.v_proj", r=8)
    (problem,) = report.problems
    assert problem.code == "rank_mismatch" and problem.expected == (8,)
    assert problem.found == (4, 4)
    assert "config (r) says r=8 but lora_A is [4, 32]" in problem.message
    patterned = dataclasses.replace(adapter, rank_pattern={"v_proj": 8})
    report = _check(patterned, tiny_llama.path, "model.layers.0.self_attn.v_proj", r=8)
    assert "config (rank_pattern) says r=8" in report.problems[0].message


def test_a_weight_that_fits_only_transposed(root: Path) -> None:
    gpt2 = make_gpt2(root / "gpt2")
    adapter = read_adapter(make_lora_adapter(gpt2, root / "gpt2-adapter").path)
    module = "transformer.h.0.attn.c_attn"  # Conv1D [32, 96]: stored [in, out]
    assert adapter.modules[module].fan_in_fan_out
    assert not _check(adapter, gpt2.path, module).warnings
    report = _check(adapter, gpt2.path, module, fan_in_fan_out=False)
    assert report.ok and [w.code for w in report.warnings] == ["fan_in_fan_out"]
    assert "only transposed" in report.warnings[0].message


def test_fan_in_fan_out_on_an_out_in_weight_is_an_error(tiny_llama: TinyModel, root: Path) -> None:
    adapter = read_adapter(
        make_lora_adapter(tiny_llama, root / "up", target_modules=["up_proj"]).path
    )
    module = "model.layers.0.mlp.up_proj"  # Linear [64, 32]: stored [out, in]
    assert not _check(adapter, tiny_llama.path, module).problems
    report = _check(adapter, tiny_llama.path, module, fan_in_fan_out=True)
    assert [p.code for p in report.problems] == ["fan_in_fan_out"]
    assert "applied transposed" in report.problems[0].message


def test_a_layer_the_base_does_not_have(tiny_llama: TinyModel, root: Path) -> None:
    adapter = read_adapter(make_lora_adapter(tiny_llama, root / "deep").path)
    shallow = make_llama(root / "llama-1layer", num_layers=1)
    report = _check(adapter, shallow.path, "model.layers.1.self_attn.q_proj")
    (problem,) = report.problems
    assert problem.code == "missing_base_module"
    assert problem.tensor == "model.layers.1.self_attn.q_proj.weight"
    assert "indices 0..0" in problem.message
