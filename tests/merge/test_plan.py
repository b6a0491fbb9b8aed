"""Planning a merge: each base tensor knows what changes it before a byte is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from loreg.errors import Incompatible
from loreg.merge.plan import TensorPlan, check_sources, new_vocab_size, plan_merge
from loreg.merge.sources import AdapterSource, open_base
from tests.factories import TinyModel, make_bert_seq_cls, make_gpt2, make_llama, make_lora_adapter


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plan")


def _plan(
    base: TinyModel,
    adapters: list[Path],
    weights: list[float] | None = None,
    method: str = "linear",
    out_dtype: str | None = None,
) -> dict[str, TensorPlan]:
    checkpoint = open_base(base.path)
    sources = [AdapterSource(p) for p in adapters]
    manifest = check_sources(checkpoint, sources)
    plans = plan_merge(
        checkpoint, sources, out_dtype, manifest, weights or [1.0] * len(sources), method
    )
    assert [p.info.name for p in plans] == [info.name for _, info in checkpoint.order]
    return {p.info.name: p for p in plans}


def test_loras_land_on_the_weights_they_change(tiny_llama: TinyModel, root: Path) -> None:
    a0 = make_lora_adapter(tiny_llama, root / "a0", target_modules=["q_proj", "v_proj"]).path
    a1 = make_lora_adapter(tiny_llama, root / "a1", target_modules=["v_proj"], seed=1).path
    plans = _plan(tiny_llama, [a0, a1])
    q = plans["model.layers.0.self_attn.q_proj.weight"]
    v = plans["model.layers.1.self_attn.v_proj.weight"]
    assert [(i, m.name) for i, m in q.loras] == [(0, "model.layers.0.self_attn.q_proj")]
    assert [i for i, _ in v.loras] == [0, 1]
    assert q.computed and not q.cast
    untouched = plans["model.layers.0.mlp.up_proj.weight"]
    assert not untouched.computed and not untouched.loras


def test_an_output_dtype_casts_floating_tensors_only(tiny_llama: TinyModel, root: Path) -> None:
    a0 = make_lora_adapter(tiny_llama, root / "cast").path
    plans = _plan(tiny_llama, [a0], out_dtype="BF16")
    assert all(p.out.dtype == "BF16" and p.cast for p in plans.values())


def test_modules_to_save_replace_the_base_tensor(root: Path) -> None:
    bert = make_bert_seq_cls(root / "bert")
    adapter = make_lora_adapter(bert, root / "bert-a").path  # saves the classifier
    plans = _plan(bert, [adapter])
    classifier = plans["classifier.weight"]
    assert classifier.replace is not None and classifier.replace[0] == 0
    assert classifier.replace[1].endswith("classifier.weight") and classifier.computed
    other = make_lora_adapter(bert, root / "bert-b", seed=1).path
    with pytest.raises(Incompatible, match="more than one adapter's modules_to_save"):
        _plan(bert, [adapter, other])


def test_lora_bias_goes_to_the_layer_bias(root: Path) -> None:
    gpt2 = make_gpt2(root / "gpt2")
    adapter = make_lora_adapter(gpt2, root / "gpt2-bias", lora_bias=True).path
    plans = _plan(gpt2, [adapter])
    bias = plans["transformer.h.0.attn.c_attn.bias"]
    assert [m.name for _, m in bias.biases] == ["transformer.h.0.attn.c_attn"]
    assert not bias.loras


def test_trainable_tokens_need_weight_one_and_rows_of_their_own(
    tiny_llama: TinyModel, root: Path
) -> None:
    a = make_lora_adapter(
        tiny_llama, root / "ta", target_modules=["q_proj"], trainable_token_indices=[3, 5]
    ).path
    b = make_lora_adapter(
        tiny_llama, root / "tb", target_modules=["v_proj"], seed=1, trainable_token_indices=[5, 9]
    ).path
    plans = _plan(tiny_llama, [a])
    assert [tm.indices for _, tm in plans["model.embed_tokens.weight"].tokens] == [(3, 5)]
    with pytest.raises(Incompatible, match="weight 1 only"):
        _plan(tiny_llama, [a], weights=[0.5])
    with pytest.raises(Incompatible, match="same rows"):
        _plan(tiny_llama, [a, b])


def test_an_adapter_for_another_base_is_refused_with_the_report(
    tiny_llama: TinyModel, root: Path
) -> None:
    wide = make_llama(root / "wide", hidden_size=64)
    adapter = make_lora_adapter(tiny_llama, root / "narrow").path
    with pytest.raises(Incompatible, match="does not fit the base") as err:
        check_sources(open_base(wide.path), [AdapterSource(adapter)])
    assert err.value.details["compatible"] is False


def test_new_vocab_size(tiny_llama: TinyModel, root: Path) -> None:
    grown = make_lora_adapter(
        tiny_llama, root / "grown", grow_vocab_to=136, modules_to_save=["embed_tokens", "lm_head"]
    ).path
    plans = list(_plan(tiny_llama, [grown]).values())
    assert new_vocab_size(plans, {"vocab_size": 128}) == 136
    assert new_vocab_size(plans, {}) is None
    plain = list(_plan(tiny_llama, [make_lora_adapter(tiny_llama, root / "plain").path]).values())
    assert new_vocab_size(plain, {"vocab_size": 128}) is None
