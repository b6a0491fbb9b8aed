"""Sorting an adapter file's keys: every key PEFT writes lands in exactly one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from loreg.formats.peft_keys import KeyRules, SortedKeys, looks_like_vocab_layer, sort_keys
from loreg.formats.safetensors import read_header_file
from loreg.formats.types import SafetensorsHeader, TensorInfo
from tests.factories import (
    TinyModel,
    make_adalora_adapter,
    make_lora_adapter,
    make_trainable_tokens_adapter,
)

PREFIX = "base_model.model."


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peft_keys")


def _header(adapter: Path) -> SafetensorsHeader:
    return read_header_file(adapter / "adapter_model.safetensors")


def _placed(found: SortedKeys) -> list[str]:
    """Every key that went somewhere, once per place it went."""
    keys = [k for p in found.lora.values() for k in p.keys]
    keys += [k for tensors in found.saved.values() for k in tensors.values()]
    keys += [t.name for t in found.tokens.values()]
    return keys + found.ignored + found.unmapped


def test_lora_dora_and_saved_modules(tiny_llama: TinyModel, root: Path) -> None:
    path = make_lora_adapter(
        tiny_llama, root / "dora", use_dora=True, modules_to_save=["lm_head"]
    ).path
    header = _header(path)
    found = sort_keys(header, KeyRules(modules_to_save=["lm_head"]))
    assert sorted(_placed(found)) == sorted(header.tensors)
    assert found.unmapped == []
    q = found.lora["model.layers.0.self_attn.q_proj"]
    assert (q.a, q.b, q.mag) == (
        header.tensors[PREFIX + "model.layers.0.self_attn.q_proj.lora_A.weight"],
        header.tensors[PREFIX + "model.layers.0.self_attn.q_proj.lora_B.weight"],
        header.tensors[PREFIX + "model.layers.0.self_attn.q_proj.lora_magnitude_vector"],
    )
    assert found.saved["lm_head"] == {"lm_head.weight": PREFIX + "lm_head.weight"}
    assert found.saved_origin["lm_head"] == "modules_to_save"


def test_resized_embeddings_keep_the_plain_key(tiny_llama: TinyModel, root: Path) -> None:
    path = make_lora_adapter(
        tiny_llama, root / "grown", modules_to_save=["embed_tokens", "lm_head"], grow_vocab_to=136
    ).path
    header = _header(path)
    found = sort_keys(header, KeyRules(modules_to_save=["embed_tokens", "lm_head"]))
    assert sorted(_placed(found)) == sorted(header.tensors)
    assert found.saved["lm_head"] == {"lm_head.weight": PREFIX + "lm_head.weight"}
    assert sorted(found.ignored) == sorted(
        f"{PREFIX}{m}.{kind}.weight"
        for m in ("lm_head", "model.embed_tokens")
        for kind in ("original_module", "modules_to_save")
    )


def test_adalora_has_a_b_and_e(tiny_llama: TinyModel, root: Path) -> None:
    header = _header(make_adalora_adapter(tiny_llama, root / "ada").path)
    found = sort_keys(header, KeyRules(adalora=True))
    assert found.lora and found.unmapped == []
    assert all(p.a and p.b and p.e for p in found.lora.values())
    assert sort_keys(header, KeyRules()).unmapped  # read as LoRA, lora_E fits nothing


def test_token_rows_only_when_the_config_names_tokens(tiny_llama: TinyModel, root: Path) -> None:
    path = make_trainable_tokens_adapter(tiny_llama, root / "tokens", token_indices=[1, 5]).path
    header = _header(path)
    found = sort_keys(header, KeyRules(trainable_tokens=True))
    assert list(found.tokens) == ["model.embed_tokens"] and found.unmapped == []
    assert sort_keys(header, KeyRules()).unmapped == list(header.tensors)


def _fake_header(*names: str) -> SafetensorsHeader:
    tensors = {n: TensorInfo(n, "F32", (2, 2), i * 16, i * 16 + 16) for i, n in enumerate(names)}
    return SafetensorsHeader(
        tensors=tensors, metadata={}, data_start=8, file_size=8 + 16 * len(names)
    )


def test_what_fits_nowhere_is_unmapped() -> None:
    header = _fake_header(
        PREFIX + "model.q_proj.lora_A.weight",
        PREFIX + "model.q_proj.lora_A.bias",  # only lora_B has a bias
        PREFIX + "model.layers.0.mystery.weight",
        "model.q_proj.lora_B.weight",  # no prefix where the others have one
    )
    found = sort_keys(header, KeyRules())
    assert sorted(found.unmapped) == sorted(list(header.tensors)[1:])
    bare = sort_keys(
        _fake_header("model.q_proj.lora_A.weight", "model.q_proj.lora_B.weight"), KeyRules()
    )
    assert bare.unmapped == [] and bare.lora["model.q_proj"].b is not None


def test_trained_biases_replace_the_base_ones() -> None:
    header = _fake_header(PREFIX + "model.q_proj.bias", PREFIX + "model.k_proj.base_layer.bias")
    found = sort_keys(header, KeyRules(trains_biases=True))
    assert found.saved_origin == {"model.q_proj": "bias", "model.k_proj": "bias"}
    assert sort_keys(header, KeyRules()).saved_origin == {"model.k_proj": "base_layer"}


def test_vocab_layers() -> None:
    assert looks_like_vocab_layer("model.embed_tokens") and looks_like_vocab_layer("lm_head")
    assert not looks_like_vocab_layer("model.layers.0.mlp.down_proj")
