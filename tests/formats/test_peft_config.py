"""adapter_config.json: checked, and rank, alpha and scale resolved per module as PEFT does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from peft.utils.other import get_pattern_key as peft_get_pattern_key

from loreg.formats.peft_config import (
    AdapterFormatError,
    adalora_rank,
    adalora_scale,
    check_config,
    get_pattern_key,
    lora_scale,
    module_matches,
    parse_config,
    resolve_rank_alpha,
    token_indices,
)

MODULE = "model.layers.0.self_attn.q_proj"


@pytest.mark.parametrize(
    "keys",
    [
        ["q_proj", "layers.0.self_attn.q_proj"],
        ["layers.0.self_attn.q_proj", "q_proj"],
        ["proj"],
        ["layers\\.\\d+\\.self_attn\\.q_proj"],
        ["self_attn.q_proj", "k_proj"],
    ],
)
def test_pattern_key_is_the_first_match_in_config_order_as_in_peft(keys: list[str]) -> None:
    # PEFT answers the module name itself when no key matches; loreg answers None.
    want = peft_get_pattern_key(keys, MODULE)
    assert get_pattern_key(keys, MODULE) == (None if want == MODULE else want)


def test_rank_and_alpha_from_the_patterns_or_the_defaults() -> None:
    cfg = {"r": 8, "lora_alpha": 16, "rank_pattern": {"q_proj": 2}, "alpha_pattern": {"v_proj": 3}}
    assert resolve_rank_alpha(cfg, MODULE) == (2, 16.0)
    assert resolve_rank_alpha(cfg, "model.layers.0.self_attn.v_proj") == (8, 3.0)
    cfg = {"r": 8, "lora_alpha": 16, "rank_pattern": {"[bad": 3}, "alpha_pattern": {}}
    assert resolve_rank_alpha(cfg, "a.q") == (8, 16.0)


def test_scales() -> None:
    assert lora_scale(4, 8, False) == 2.0
    assert lora_scale(4, 8, True) == 4.0
    assert lora_scale(0, 8, False) == 0.0
    assert adalora_scale({"init_r": 12, "lora_alpha": 8}, 3) == pytest.approx(8 / 12.00001)
    masks = {"model.layers.0.self_attn.q_proj.lora_E": [True, False, True]}
    assert adalora_rank({"init_r": 12, "rank_pattern": masks}, MODULE) == 2
    assert adalora_rank({"init_r": 12, "rank_pattern": masks}, "other") == 12


def test_module_matches_like_target_modules() -> None:
    assert module_matches(["q_proj"], MODULE)
    assert not module_matches(["proj"], MODULE)
    assert module_matches(r".*\.q_proj", MODULE)
    assert module_matches("all-linear", MODULE)
    assert not module_matches("[bad", MODULE)
    assert not module_matches(None, MODULE)


def test_token_indices_as_a_list_or_per_layer() -> None:
    assert token_indices({"peft_type": "LORA", "trainable_token_indices": [3, 5]}) == {"": (3, 5)}
    assert token_indices({"peft_type": "LORA", "trainable_token_indices": {"embed": [1]}}) == {
        "embed": (1,)
    }
    assert token_indices({"peft_type": "TRAINABLE_TOKENS", "token_indices": [7]}) == {"": (7,)}
    assert token_indices({"peft_type": "LORA"}) is None


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"peft_type": "IA3", "r": 4}, "unsupported peft_type"),
        ({"peft_type": "LORA", "r": True}, "positive integer"),
        ({"peft_type": "LORA", "r": 4, "lora_alpha": True}, "lora_alpha"),
        ({"peft_type": "LORA", "r": 4, "rank_pattern": {"q": 0}}, "ranks must be positive"),
        ({"peft_type": "LORA", "r": 4, "alpha_pattern": {"q": "x"}}, "alpha_pattern"),
        ({"peft_type": "ADALORA", "rank_pattern": {"q": [True, 1]}}, "masks must be booleans"),
        ({"peft_type": "LORA", "r": 4, "target_modules": [1]}, "target_modules"),
        ({"peft_type": "LORA", "r": 4, "target_parameters": [""]}, "target_parameters"),
        ({"peft_type": "LORA", "r": 4, "trainable_token_indices": {"": [1]}}, "token ids"),
    ],
)
def test_bad_fields_are_refused(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AdapterFormatError) as e:
        check_config(config)
    assert fragment in e.value.message and e.value.code == "invalid_adapter"


def test_a_good_config_comes_back_unchanged() -> None:
    config = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj"],
        "rank_pattern": {"q_proj": 2},
        "modules_to_save": ["lm_head"],
    }
    assert check_config(config) is config
    assert check_config({"peft_type": "ADALORA"})["peft_type"] == "ADALORA"  # init_r 12


def test_parse_config() -> None:
    assert parse_config(json.dumps({"peft_type": "LORA"}).encode()) == {"peft_type": "LORA"}
    with pytest.raises(AdapterFormatError, match="not valid JSON"):
        parse_config(b"\xff")
    with pytest.raises(AdapterFormatError, match="over"):
        parse_config(b" " * (16 * 1024 * 1024 + 1))
