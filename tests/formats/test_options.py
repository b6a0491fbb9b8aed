"""Which adapter_config.json fields loreg applies, ignores or refuses, against PEFT itself:
every field of the installed PEFT's configs is sorted into a group, configs as PEFT saves
them pass, and real PEFT adapters using a refused feature are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from loreg.formats.compat import adapter_findings
from loreg.formats.options import APPLIED, NEUTRAL, REFUSED, option_findings
from loreg.formats.peft import read_adapter
from tests.factories import make_llama, make_lora_adapter


def _saved_config(config: Any) -> dict[str, Any]:
    return dict(config.to_dict())


@pytest.mark.parametrize("cls_name", ["LoraConfig", "AdaLoraConfig", "TrainableTokensConfig"])
def test_every_peft_field_is_sorted(cls_name: str) -> None:
    """A PEFT release that adds a field fails here until the field is put in a group."""
    import peft

    fields = {f.name for f in dataclasses.fields(getattr(peft, cls_name))}
    unsorted = fields - APPLIED - NEUTRAL - set(REFUSED)
    assert not unsorted, f"{cls_name} fields loreg has not classified: {sorted(unsorted)}"
    assert not (APPLIED & NEUTRAL) and not (set(REFUSED) & (APPLIED | NEUTRAL))


def test_configs_as_peft_saves_them_pass() -> None:
    from peft import AdaLoraConfig, LoraConfig, TrainableTokensConfig

    for config in (
        LoraConfig(r=4, target_modules=["q_proj"]),
        LoraConfig(
            r=4,
            target_modules=["q_proj"],
            use_dora=True,
            use_rslora=True,
            trainable_token_indices=[1, 2],
            init_lora_weights="gaussian",
        ),
        LoraConfig(r=4, target_modules=[], target_parameters=["experts.down_proj"]),
        AdaLoraConfig(init_r=6, target_r=3, total_step=10, target_modules=["q_proj"]),
        TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=[1]),
    ):
        assert option_findings(_saved_config(config), has_embedding_lora=False) == []


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_refused_fields_are_named(field: str) -> None:
    found = option_findings(
        {"peft_type": "LORA", "r": 4, field: {"x": 1}}, has_embedding_lora=False
    )
    assert [(f.field, f.code) for f in found] == [(field, "unsupported_option")]
    assert (
        option_findings({"peft_type": "LORA", "r": 4, field: None}, has_embedding_lora=False) == []
    )


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        (True, False),
        (False, False),
        ("gaussian", False),
        ("eva", False),
        ("orthogonal", False),
        ("pissa", True),
        ("pissa_niter_4", True),
        ("olora", True),
        ("corda", True),
        ("loftq", True),
        ("lora_ga", True),
        ("mica", True),
    ],
)
def test_init_lora_weights(value: Any, refused: bool) -> None:
    found = option_findings({"init_lora_weights": value}, has_embedding_lora=False)
    assert bool(found) == refused
    if refused:
        assert found[0].field == "init_lora_weights"


@pytest.mark.parametrize("value", [None, False, 0, "", [], {}])
def test_unknown_empty_fields_pass(value: Any) -> None:
    assert option_findings({"some_future_option": value}, has_embedding_lora=False) == []


@pytest.mark.parametrize("value", [True, 2.0, "on", [1], {"a": 1}])
def test_unknown_fields_with_a_value_are_refused(value: Any) -> None:
    (found,) = option_findings({"some_future_option": value}, has_embedding_lora=False)
    assert found.code == "unknown_option" and "some_future_option" in found.message


def test_weight_tying_and_bias_values() -> None:
    config = {"ensure_weight_tying": True}
    assert option_findings(config, has_embedding_lora=False) == []
    assert option_findings(config, has_embedding_lora=True)[0].field == "ensure_weight_tying"
    assert option_findings({"bias": "some"}, has_embedding_lora=False)[0].field == "bias"
    for bias in ("none", "all", "lora_only"):
        assert option_findings({"bias": bias}, has_embedding_lora=False) == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"init_lora_weights": "pissa"}, "init_lora_weights"),
        ({"layer_replication": [[0, 2], [1, 2]]}, "layer_replication"),
    ],
)
def test_real_peft_adapters_with_refused_features(
    tmp_path: Path, options: dict[str, Any], field: str
) -> None:
    """PEFT builds these on CPU; loreg refuses them, naming the field and what to do."""
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter", **options)
    findings = adapter_findings(read_adapter(adapter.path))
    assert [f.details for f in findings if f.code == "unsupported_option"] == [{"field": field}]
