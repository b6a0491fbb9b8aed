"""PEFT adapter descriptions, with PEFT itself as the oracle (config, modules, state dict)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from loreg.formats.base import read_manifest
from loreg.formats.compat import bind
from loreg.formats.peft import describe_adapter, read_adapter
from loreg.formats.peft_config import AdapterFormatError
from loreg.formats.safetensors import read_header
from tests.factories import (
    TinyAdapter,
    TinyModel,
    load_model,
    make_bert_seq_cls,
    make_gpt2,
    make_llama,
    make_lora_adapter,
    make_t5,
)
from tests.factories.adapter_kinds import KINDS, build_kind

PREFIX = "base_model.model."


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    root = tmp_path_factory.mktemp("bases")
    return {
        "llama": make_llama(root / "llama"),
        "gpt2": make_gpt2(root / "gpt2"),
        "bert": make_bert_seq_cls(root / "bert"),
        "t5": make_t5(root / "t5"),
    }


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {}),
    "llama-rslora": ("llama", {"use_rslora": True, "r": 8, "lora_alpha": 16}),
    "llama-dora": ("llama", {"use_dora": True}),
    "llama-patterns": (
        "llama",
        {
            "target_modules": ["q_proj", "v_proj", "down_proj"],
            "rank_pattern": {"q_proj": 2, r"layers\.1\.mlp\.down_proj": 6},
            "alpha_pattern": {"v_proj": 3, "model.layers.0.self_attn.q_proj": 5},
        },
    ),
    "llama-embedding": ("llama", {"target_modules": ["embed_tokens", "q_proj", "lm_head"]}),
    "llama-embedding-dora": ("llama", {"target_modules": ["embed_tokens"], "use_dora": True}),
    "llama-mts-grown": (
        "llama",
        {"modules_to_save": ["embed_tokens", "lm_head"], "grow_vocab_to": 136},
    ),
    "llama-lora-bias": ("llama", {"lora_bias": True}),
    "llama-bf16-regex": (
        "llama",
        {"target_modules": r".*\.mlp\.(up|gate)_proj", "dtype": torch.bfloat16},
    ),
    "gpt2": ("gpt2", {}),
    "gpt2-dora": ("gpt2", {"use_dora": True}),
    "bert-seq-cls": ("bert", {}),
    "bert-mts": ("bert", {"modules_to_save": ["classifier", "pooler.dense"]}),
    "t5": ("t5", {"use_rslora": True}),
}


@pytest.fixture(scope="module")
def adapters(
    bases: dict[str, TinyModel], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, TinyAdapter]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        case: make_lora_adapter(bases[base], root / case, **kwargs)
        for case, (base, kwargs) in CASES.items()
    }


def _peft_lora_layers(adapter: TinyAdapter) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in adapter.model.named_modules():
        if isinstance(module, LoraLayer):
            assert name.startswith(PREFIX)
            out[name[len(PREFIX) :]] = module
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_description_equals_peft(case: str, adapters: dict[str, TinyAdapter]) -> None:
    from peft import get_peft_model_state_dict

    adapter = adapters[case]
    desc = read_adapter(adapter.path)
    cfg = adapter.lora_config
    assert desc.peft_type == "LORA"
    assert desc.r == cfg.r and desc.lora_alpha == cfg.lora_alpha
    assert desc.use_rslora == cfg.use_rslora and desc.use_dora == cfg.use_dora
    assert desc.fan_in_fan_out == cfg.fan_in_fan_out
    assert desc.lora_bias == cfg.lora_bias
    targets = cfg.target_modules
    assert (
        sorted(desc.target_modules) if not isinstance(targets, str) else desc.target_modules
    ) == (sorted(targets) if not isinstance(targets, str) else targets)
    assert desc.rank_pattern == dict(cfg.rank_pattern)
    assert desc.alpha_pattern == {k: float(v) for k, v in cfg.alpha_pattern.items()}
    assert desc.task_type == cfg.task_type

    # Every LoRA layer PEFT created, with PEFT's own rank, alpha and scaling.
    layers = _peft_lora_layers(adapter)
    assert set(desc.modules) == set(layers)
    for name, layer in layers.items():
        mod = desc.modules[name]
        assert mod.r == layer.r["default"], name
        assert mod.alpha == layer.lora_alpha["default"], name
        assert mod.scale == pytest.approx(layer.scaling["default"]), name
        embedding = "default" in getattr(layer, "lora_embedding_A", {})
        assert mod.kind == ("embedding" if embedding else "linear")
        assert (mod.magnitude_key is not None) == cfg.use_dora
        assert (mod.bias_key is not None) == cfg.lora_bias

    # Shapes as PEFT's state dict has them; every saved tensor is accounted for.
    state = get_peft_model_state_dict(adapter.model)
    saved = load_file(str(adapter.path / "adapter_model.safetensors"))
    assert set(state) == set(saved)
    for mod in desc.modules.values():
        assert mod.a_shape == tuple(state[mod.a_key].shape)
        assert mod.b_shape == tuple(state[mod.b_key].shape)
        if mod.magnitude_key:
            assert mod.magnitude_shape == tuple(state[mod.magnitude_key].shape)
    mapped = {
        k for m in desc.modules.values() for k in (m.a_key, m.b_key, m.magnitude_key, m.bias_key)
    }
    mapped |= {k for sm in desc.saved_modules.values() for k in sm.tensors.values()}
    assert desc.unmapped_keys == ()
    assert mapped | set(desc.ignored_keys) - {None} >= set(saved)
    assert desc.num_parameters == sum(t.numel() for t in saved.values())
    assert desc.size_bytes == (adapter.path / "adapter_model.safetensors").stat().st_size
    expected_dtype = "BF16" if case == "llama-bf16-regex" else "F32"
    assert desc.dtype == expected_dtype


def test_describe_from_config_and_header_alone(adapters: dict[str, TinyAdapter]) -> None:
    path = adapters["llama-patterns"].path
    weights = path / "adapter_model.safetensors"
    raw = weights.read_bytes()
    header = read_header(
        lambda s, n: raw[s : s + n], name="adapter_model.safetensors", size=len(raw)
    )
    config = json.loads((path / "adapter_config.json").read_text())
    assert describe_adapter(config, header, size_bytes=len(raw)) == read_adapter(path)


def test_patterns_resolved_like_peft(adapters: dict[str, TinyAdapter]) -> None:
    desc = read_adapter(adapters["llama-patterns"].path)
    m = desc.modules
    assert (m["model.layers.0.self_attn.q_proj"].r, m["model.layers.0.self_attn.q_proj"].alpha) == (
        2,
        5,
    )
    assert (m["model.layers.1.self_attn.q_proj"].r, m["model.layers.1.self_attn.q_proj"].alpha) == (
        2,
        8,
    )
    assert m["model.layers.1.mlp.down_proj"].r == 6
    assert m["model.layers.0.mlp.down_proj"].r == 4
    assert m["model.layers.0.self_attn.v_proj"].alpha == 3


def test_gpt2_conv1d_is_fan_in_fan_out(adapters: dict[str, TinyAdapter]) -> None:
    desc = read_adapter(adapters["gpt2"].path)
    attn = desc.modules["transformer.h.0.attn.c_attn"]
    assert attn.fan_in_fan_out
    assert attn.a_shape == (4, 32) and attn.b_shape == (96, 4)  # base weight is [32, 96]


def test_embedding_targets(adapters: dict[str, TinyAdapter]) -> None:
    desc = read_adapter(adapters["llama-embedding"].path)
    emb = desc.modules["model.embed_tokens"]
    assert emb.kind == "embedding"
    assert emb.a_shape == (4, 128) and emb.b_shape == (32, 4)
    assert emb.a_key.endswith("lora_embedding_A")
    # PEFT saves the embedding and lm_head base layers with embedding targets.
    assert desc.saved_modules["model.embed_tokens"].origin == "base_layer"
    assert desc.saved_modules["model.embed_tokens"].tensors == {
        "model.embed_tokens.weight": "base_model.model.model.embed_tokens.base_layer.weight"
    }
    dora = read_adapter(adapters["llama-embedding-dora"].path)
    assert dora.modules["model.embed_tokens"].magnitude_shape == (32,)


def test_modules_to_save(adapters: dict[str, TinyAdapter]) -> None:
    bert = read_adapter(adapters["bert-seq-cls"].path)
    # PEFT adds the classifier head to modules_to_save for SEQ_CLS.
    assert "classifier" in bert.modules_to_save
    assert bert.saved_modules["classifier"].shapes == {
        "classifier.weight": (3, 32),
        "classifier.bias": (3,),
    }
    both = read_adapter(adapters["bert-mts"].path)
    assert set(both.saved_modules) == {"classifier", "bert.pooler.dense"}
    grown = read_adapter(adapters["llama-mts-grown"].path)
    assert grown.saved_modules["lm_head"].shapes["lm_head.weight"] == (136, 32)
    assert grown.saved_modules["model.embed_tokens"].shapes["model.embed_tokens.weight"] == (
        136,
        32,
    )
    # PEFT writes lm_head.weight and an equal lm_head.modules_to_save.weight: the plain wins.
    assert (
        grown.saved_modules["lm_head"].tensors["lm_head.weight"]
        == "base_model.model.lm_head.weight"
    )
    assert sorted(grown.ignored_keys) == sorted(
        f"base_model.model.{m}.{kind}.weight"
        for m in ("lm_head", "model.embed_tokens")
        for kind in ("original_module", "modules_to_save")
    )


def _rewrite(src: Path, dst: Path, rename: Any, config_update: dict | None = None) -> Path:
    dst.mkdir(parents=True)
    tensors = load_file(str(src / "adapter_model.safetensors"))
    save_file({rename(k): v for k, v in tensors.items()}, str(dst / "adapter_model.safetensors"))
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg.update(config_update or {})
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


def test_legacy_key_forms(adapters: dict[str, TinyAdapter], tmp_path: Path) -> None:
    """Adapter names in keys (older PEFT), modules_to_save.<name>., and no prefix at all."""
    src = adapters["llama-dora"].path
    new = read_adapter(src)

    def with_names(k: str) -> str:
        k = k.replace(".lora_A.weight", ".lora_A.default.weight")
        k = k.replace(".lora_B.weight", ".lora_B.default.weight")
        return k.replace(".lora_magnitude_vector", ".lora_magnitude_vector.default.weight")

    old = read_adapter(_rewrite(src, tmp_path / "named", with_names))
    assert {n: (m.a_shape, m.b_shape, m.magnitude_shape, m.r) for n, m in old.modules.items()} == {
        n: (m.a_shape, m.b_shape, m.magnitude_shape, m.r) for n, m in new.modules.items()
    }
    bare = read_adapter(_rewrite(src, tmp_path / "bare", lambda k: k[len(PREFIX) :]))
    assert set(bare.modules) == set(new.modules)

    bert = adapters["bert-seq-cls"].path
    mts = read_adapter(
        _rewrite(
            bert,
            tmp_path / "mts",
            lambda k: k.replace("classifier.", "classifier.modules_to_save.default."),
        )
    )
    assert (
        mts.saved_modules["classifier"]
        .tensors["classifier.weight"]
        .endswith("classifier.modules_to_save.default.weight")
    )
    assert mts.unmapped_keys == ()


def test_unknown_and_half_pairs_are_unmapped(
    adapters: dict[str, TinyAdapter], tmp_path: Path
) -> None:
    src = adapters["llama"].path
    tensors = load_file(str(src / "adapter_model.safetensors"))
    tensors["base_model.model.model.layers.0.mystery.weight"] = torch.zeros(2)
    del tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    dst = tmp_path / "odd"
    dst.mkdir()
    save_file(tensors, str(dst / "adapter_model.safetensors"))
    (dst / "adapter_config.json").write_bytes((src / "adapter_config.json").read_bytes())
    desc = read_adapter(dst)
    assert "model.layers.0.self_attn.q_proj" not in desc.modules
    assert set(desc.unmapped_keys) == {
        "base_model.model.model.layers.0.mystery.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
    }


def test_legacy_bin_is_refused_with_instructions(
    adapters: dict[str, TinyAdapter], tmp_path: Path
) -> None:
    dst = tmp_path / "legacy"
    dst.mkdir()
    (dst / "adapter_config.json").write_bytes(
        (adapters["llama"].path / "adapter_config.json").read_bytes()
    )
    (dst / "adapter_model.bin").write_bytes(b"\x80\x04 not unpickled")
    with pytest.raises(AdapterFormatError) as e:
        read_adapter(dst)
    assert "weights_only=True" in e.value.message and "adapter_model.safetensors" in e.value.message


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"peft_type": "IA3", "r": 4}).encode(), "unsupported peft_type"),
        (json.dumps({"peft_type": "LOHA", "r": 4}).encode(), "save_as_lora"),
        (json.dumps({"peft_type": "ADALORA", "init_r": 0}).encode(), "init_r"),
        (
            json.dumps({"peft_type": "ADALORA", "rank_pattern": {"q.lora_E": [1, 0]}}).encode(),
            "masks",
        ),
        (
            json.dumps({"peft_type": "LORA", "r": 4, "trainable_token_indices": [3, 3]}).encode(),
            "twice",
        ),
        (
            json.dumps({"peft_type": "LORA", "r": 4, "trainable_token_indices": "3"}).encode(),
            "token ids",
        ),
        (
            json.dumps({"peft_type": "LORA", "r": 4, "target_parameters": "experts"}).encode(),
            "target_parameters",
        ),
        (json.dumps({"peft_type": "TRAINABLE_TOKENS"}).encode(), "token_indices"),
        (json.dumps({"r": 4}).encode(), "no peft_type"),
        (json.dumps({"peft_type": "LORA", "r": 0}).encode(), "positive integer"),
        (json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": "x"}).encode(), "lora_alpha"),
        (
            json.dumps({"peft_type": "LORA", "r": 4, "rank_pattern": {"q": "x"}}).encode(),
            "rank_pattern",
        ),
        (
            json.dumps({"peft_type": "LORA", "r": 4, "modules_to_save": "lm_head"}).encode(),
            "modules_to_save",
        ),
    ],
)
def test_bad_configs(
    adapters: dict[str, TinyAdapter], tmp_path: Path, config: bytes, fragment: str
) -> None:
    dst = tmp_path / "bad"
    dst.mkdir()
    (dst / "adapter_config.json").write_bytes(config)
    (dst / "adapter_model.safetensors").write_bytes(
        (adapters["llama"].path / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(AdapterFormatError) as e:
        read_adapter(dst)
    assert fragment in e.value.message


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(AdapterFormatError, match="not a folder"):
        read_adapter(tmp_path / "nope")
    with pytest.raises(AdapterFormatError, match=r"adapter_config\.json"):
        read_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    with pytest.raises(AdapterFormatError, match=r"no adapter_model\.safetensors"):
        read_adapter(tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_kind_descriptions_equal_peft(kind: str, tmp_path: Path) -> None:
    """Every LoRA layer PEFT builds from the folder is described with PEFT's rank and
    scaling (AdaLoRA: ``scaling / (ranknum + 1e-5)``), experts and parameter; every
    trainable-tokens layer with PEFT's token ids; nothing is left unmapped or unknown."""
    from peft import PeftModel
    from peft.tuners.adalora import AdaLoraLayer
    from peft.tuners.lora import LoraLayer, ParamWrapper
    from peft.tuners.trainable_tokens import TrainableTokensLayer

    case = build_kind(kind, tmp_path / "in")
    desc = read_adapter(case.adapter)
    assert desc.unmapped_keys == () and desc.option_findings == ()
    model = load_model(case.base.path)
    if case.vocab is not None:
        model.resize_token_embeddings(case.vocab)
    peft = PeftModel.from_pretrained(model, str(case.adapter))
    lora_layers, token_layers, own_rows = {}, {}, set()
    for name, layer in peft.named_modules():
        short = name.removeprefix(PREFIX)
        if isinstance(layer, LoraLayer) and "default" in layer.lora_A:
            lora_layers[short] = layer
        elif isinstance(layer, TrainableTokensLayer):
            token_layers[short.removesuffix(".token_adapter")] = layer
            if layer.tied_adapter is None:
                own_rows.add(short.removesuffix(".token_adapter"))
    assert set(desc.modules) == set(lora_layers)
    # a parameter's rank, alpha and experts are settled against the base (formats.targets)
    bound = {bp.module.name: bp.module for bp in bind(desc, read_manifest(case.base.path)).bound}
    for name, layer in lora_layers.items():
        mod = bound.get(name, desc.modules[name])
        scaling = layer.scaling["default"]
        if desc.peft_type == "ADALORA":
            assert isinstance(layer, AdaLoraLayer)
            scaling = scaling / (float(layer.ranknum["default"]) + 1e-5)
            assert mod.e_key is not None
        assert mod.scale == pytest.approx(scaling, rel=1e-6), name
        assert mod.r == layer.r["default"], name
        if isinstance(layer, ParamWrapper):
            assert mod.kind == "parameter" and layer.parameter_name in mod.parameters
            assert mod.num_experts == layer.num_experts
    # layers with their own rows, and tied layers PEFT saved a copy of the rows for
    assert own_rows <= set(desc.token_modules) <= set(token_layers)
    for name, tm in desc.token_modules.items():
        assert list(tm.indices) == list(token_layers[name].token_indices["default"])
