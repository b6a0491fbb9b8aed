"""Tiny, seeded, randomly initialised transformers models and PEFT LoRA adapters on them.

PEFT and transformers are the oracle (CONTRIBUTING.md): tests build real checkpoints with
``save_pretrained`` from configs (nothing is downloaded) and compare loreg's readings with
what PEFT itself says. Everything is seeded so two calls with the same arguments write the
same bytes. Models are tiny (hidden 32, 2 layers) so a build takes well under a second.

Typical use::

    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter", r=4, use_dora=True)
    adapter.path          # folder with adapter_config.json + adapter_model.safetensors
    adapter.model         # the in-memory PeftModel (oracle: .r, .scaling, state dict)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _quiet() -> None:
    """No progress bars or load reports in test output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so a build is reproducible byte for byte."""
    _quiet()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TinyModel:
    """A saved base checkpoint; ``model`` is the in-memory model it was saved from."""

    path: Path
    kind: str  # "llama", "gpt2", "bert-seq-cls", "t5"
    model: Any  # transformers.PreTrainedModel
    config: Any  # transformers.PretrainedConfig


@dataclass
class TinyAdapter:
    """A saved PEFT adapter; ``model`` is the in-memory PeftModel it was saved from."""

    path: Path
    base: TinyModel
    model: Any  # peft.PeftModel
    lora_config: Any  # peft.LoraConfig


def _save(model: Any, path: Path, *, max_shard_size: str | int | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    model.save_pretrained(str(path), **kwargs)


def _finish(
    model: Any, path: Path, kind: str, *, dtype: torch.dtype, max_shard_size: str | int | None
) -> TinyModel:
    model = model.to(dtype).eval()
    _save(model, path, max_shard_size=max_shard_size)
    return TinyModel(path=path, kind=kind, model=model, config=model.config)


def make_llama(
    path: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 128,
    intermediate_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    tie_word_embeddings: bool = False,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    max_shard_size: str | int | None = None,
) -> TinyModel:
    """A Llama-style causal LM (``LlamaForCausalLM``) saved as safetensors into ``path``.

    ``max_shard_size`` (e.g. ``"20KB"``) makes ``save_pretrained`` write shards plus
    ``model.safetensors.index.json``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    seed_everything(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=64,
        tie_word_embeddings=tie_word_embeddings,
    )
    model = LlamaForCausalLM(config)
    return _finish(model, path, "llama", dtype=dtype, max_shard_size=max_shard_size)


def make_gpt2(
    path: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 128,
    num_heads: int = 4,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    max_shard_size: str | int | None = None,
) -> TinyModel:
    """A GPT-2 causal LM: its attention/MLP layers are ``Conv1D`` (weights stored [in, out])."""
    from transformers import GPT2Config, GPT2LMHeadModel

    seed_everything(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=num_heads,
        n_positions=64,
    )
    model = GPT2LMHeadModel(config)
    return _finish(model, path, "gpt2", dtype=dtype, max_shard_size=max_shard_size)


def make_bert_seq_cls(
    path: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 128,
    num_heads: int = 4,
    intermediate_size: int = 64,
    num_labels: int = 3,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    max_shard_size: str | int | None = None,
) -> TinyModel:
    """A BERT encoder with a sequence-classification head (``classifier``)."""
    from transformers import BertConfig, BertForSequenceClassification

    seed_everything(seed)
    # num_labels reaches __post_init__ as an extra kwarg; the typed signature omits it
    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    model = BertForSequenceClassification(config)
    return _finish(model, path, "bert-seq-cls", dtype=dtype, max_shard_size=max_shard_size)


def make_t5(
    path: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 128,
    num_heads: int = 4,
    d_kv: int = 8,
    d_ff: int = 64,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    max_shard_size: str | int | None = None,
) -> TinyModel:
    """A T5 encoder-decoder (``T5ForConditionalGeneration``)."""
    from transformers import T5Config, T5ForConditionalGeneration

    seed_everything(seed)
    # decoder_start_token_id reaches __post_init__ as an extra kwarg; the typed signature omits it
    config = T5Config(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        d_model=hidden_size,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        decoder_start_token_id=0,
        pad_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    return _finish(model, path, "t5", dtype=dtype, max_shard_size=max_shard_size)


# Mixture-of-experts families transformers 5 ships, as tiny configs. Sizes are chosen so no
# expert weight is square (hidden 32, expert intermediate 24): the layout of a LoRA on a
# fused expert parameter then follows from its shapes.
MOE_FAMILIES = ("qwen3_moe", "mixtral", "gpt_oss", "llama4_text")
MOE_TARGET_PARAMETERS = {
    "qwen3_moe": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
    "mixtral": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
    "gpt_oss": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
    "llama4_text": ["feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj"],
}


def make_moe(
    path: Path,
    family: str,
    *,
    num_layers: int = 2,
    num_experts: int = 4,
    hidden_size: int = 32,
    expert_size: int = 24,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    max_shard_size: str | int | None = None,
) -> TinyModel:
    """A tiny mixture-of-experts causal LM of ``family`` (one of ``MOE_FAMILIES``).

    ``expert_size`` is the experts' intermediate size (``hidden_size == 2 * expert_size``
    makes ``gate_up_proj`` square).

    transformers 5 saves Qwen3-MoE and Mixtral experts per expert (``experts.0.gate_proj``
    / ``block_sparse_moe.experts.0.w1``...), gpt-oss and Llama 4 fused (``experts.gate_up_proj``).
    """
    import transformers as tf

    seed_everything(seed)
    common: dict[str, Any] = {
        "vocab_size": 128,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "tie_word_embeddings": False,
    }
    config: tf.PreTrainedConfig
    model: tf.PreTrainedModel
    if family == "qwen3_moe":
        # head_dim reaches __post_init__ as an extra kwarg; the typed signature omits it
        config = tf.Qwen3MoeConfig(
            **common,
            moe_intermediate_size=expert_size,  # type: ignore[call-arg]
            intermediate_size=2 * expert_size,
            num_experts=num_experts,
            num_experts_per_tok=2,
            head_dim=8,
        )
        model = tf.Qwen3MoeForCausalLM(config)
    elif family == "mixtral":
        config = tf.MixtralConfig(
            **common,
            intermediate_size=expert_size,
            num_local_experts=num_experts,
            num_experts_per_tok=2,
        )
        model = tf.MixtralForCausalLM(config)
    elif family == "gpt_oss":
        config = tf.GptOssConfig(
            **common,
            intermediate_size=expert_size,
            num_local_experts=num_experts,
            num_experts_per_tok=2,
            head_dim=8,
            layer_types=["full_attention"] * num_layers,
        )
        model = tf.GptOssForCausalLM(config)
    elif family == "llama4_text":
        config = tf.Llama4TextConfig(
            **common,
            intermediate_size=expert_size,
            intermediate_size_mlp=40,
            num_local_experts=num_experts,
            num_experts_per_tok=1,
            head_dim=8,
            interleave_moe_layer_step=1,
        )
        model = tf.Llama4ForCausalLM(config)
    else:
        raise ValueError(f"unknown MoE family {family!r}")
    with torch.no_grad():  # some experts start as zeros: make every weight matter
        for param in model.parameters():
            if param.dim() == 3 and not param.abs().sum():
                param.normal_(std=0.02)
    return _finish(model, path, family, dtype=dtype, max_shard_size=max_shard_size)


def load_model(path: Path, *, dtype: torch.dtype | None = None) -> Any:
    """Load a saved tiny model with the class named in its ``config.json``."""
    import transformers

    config = json.loads((Path(path) / "config.json").read_text())
    cls = getattr(transformers, config["architectures"][0])
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return cls.from_pretrained(str(path), **kwargs).eval()


_DEFAULT_TARGETS = {
    **{family: ["q_proj"] for family in MOE_FAMILIES},
    "llama": DEFAULT_LLAMA_TARGETS,
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "bert-seq-cls": ["query", "key", "value", "dense"],
    "t5": ["q", "k", "v", "o", "wi", "wo"],
}
_DEFAULT_TASK = {
    **{family: "CAUSAL_LM" for family in MOE_FAMILIES},
    "llama": "CAUSAL_LM",
    "gpt2": "CAUSAL_LM",
    "bert-seq-cls": "SEQ_CLS",
    "t5": "SEQ_2_SEQ_LM",
}


def make_lora_adapter(
    base: TinyModel,
    path: Path,
    *,
    r: int = 4,
    lora_alpha: float = 8,
    target_modules: list[str] | str | None = None,
    use_rslora: bool = False,
    use_dora: bool = False,
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
    modules_to_save: list[str] | None = None,
    lora_bias: bool = False,
    fan_in_fan_out: bool | None = None,
    task_type: str | None = "default",
    adapter_name: str = "default",
    seed: int = 0,
    dtype: torch.dtype | None = None,
    grow_vocab_to: int | None = None,
    **extra: Any,
) -> TinyAdapter:
    """A PEFT LoRA adapter on ``base``, saved with ``save_pretrained`` into ``path``.

    ``init_lora_weights=False`` so B (and A) are random, not zero: merges change the weights.
    ``target_modules`` defaults per architecture (attention projections; GPT-2's Conv1D
    layers; BERT's query/key/value/dense; T5's q/k/v/o/wi/wo). ``fan_in_fan_out`` defaults to
    True for GPT-2. ``task_type="default"`` picks the architecture's natural task type; pass
    ``None`` for a plain ``PeftModel`` (keys then lack the task wrapper's differences).
    ``grow_vocab_to`` resizes the token embeddings before wrapping (tokens added during
    fine-tuning), typically together with ``modules_to_save=["embed_tokens", "lm_head"]``.
    ``dtype`` casts the adapter's tensors before saving (e.g. ``torch.bfloat16``).
    Extra keyword arguments go to ``LoraConfig`` unchanged (e.g. ``layers_to_transform``).
    """
    from peft import LoraConfig, get_peft_model

    model = load_model(base.path)
    if grow_vocab_to is not None:
        model.resize_token_embeddings(grow_vocab_to)
    if target_modules is None:
        target_modules = list(_DEFAULT_TARGETS[base.kind])
    if fan_in_fan_out is None:
        fan_in_fan_out = base.kind == "gpt2"
    if task_type == "default":
        task_type = _DEFAULT_TASK[base.kind]
    lora_config = LoraConfig(
        r=r,
        lora_alpha=lora_alpha,  # type: ignore[arg-type]
        target_modules=target_modules,
        use_rslora=use_rslora,
        use_dora=use_dora,
        rank_pattern=rank_pattern or {},
        alpha_pattern=alpha_pattern or {},
        modules_to_save=modules_to_save,
        lora_bias=lora_bias,
        fan_in_fan_out=fan_in_fan_out,
        task_type=task_type,
        lora_dropout=0.0,
        base_model_name_or_path=str(base.path),
        **{"init_lora_weights": False, **extra},
    )
    seed_everything(seed)
    peft_model = get_peft_model(model, lora_config, adapter_name=adapter_name)
    if extra.get("trainable_token_indices") is not None:
        # PEFT starts the token rows as copies of the base's; change them as training would
        # (named_parameters lists a tied layer's shared rows once: tied copies stay equal).
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "trainable_tokens_delta" in name:
                    param.add_(torch.randn_like(param) * 0.5)
    if lora_bias:
        # PEFT initialises lora_B.bias to zero; randomise it so it matters in merges.
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name and name.endswith(".bias"):
                    param.normal_(std=0.02)
    if dtype is not None:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name or "modules_to_save" in name:
                    param.data = param.data.to(dtype)
    peft_model.eval()
    path.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(path))
    if adapter_name != "default":
        # PEFT saves non-default adapters under a subfolder named after them.
        sub = path / adapter_name
        if sub.is_dir():
            for f in sub.iterdir():
                f.replace(path / f.name)
            sub.rmdir()
    return TinyAdapter(path=path, base=base, model=peft_model, lora_config=lora_config)


def make_adalora_adapter(
    base: TinyModel,
    path: Path,
    *,
    init_r: int = 6,
    lora_alpha: float = 8,
    target_modules: list[str] | None = None,
    masks: dict[str, list[bool]] | None = None,
    seed: int = 0,
) -> TinyAdapter:
    """A PEFT AdaLoRA adapter with random A, E and B, saved into ``path``.

    ``masks`` ({module suffix: rank mask}) stands for a finished rank allocation: PEFT saves
    those modules with the kept ranks only and records the masks in ``rank_pattern``.
    """
    from peft import AdaLoraConfig, get_peft_model

    model = load_model(base.path)
    config = AdaLoraConfig(
        init_r=init_r,
        target_r=max(1, init_r // 2),
        lora_alpha=lora_alpha,  # type: ignore[arg-type]
        target_modules=target_modules or ["q_proj", "v_proj"],
        total_step=100,
        task_type=_DEFAULT_TASK[base.kind],
        base_model_name_or_path=str(base.path),
    )
    seed_everything(seed)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(std=0.3)
    if masks:
        pattern = {}
        for name, _ in peft_model.named_parameters():
            if ".lora_E." not in name:
                continue
            module = name.removeprefix("base_model.model.").split(".lora_E.")[0]
            for suffix, mask in masks.items():
                if module.endswith(suffix):
                    pattern[f"{module}.lora_E"] = list(mask)
        adalora_config = peft_model.peft_config["default"]
        assert isinstance(adalora_config, AdaLoraConfig)
        adalora_config.rank_pattern = pattern
    peft_model.eval()
    path.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(path))
    return TinyAdapter(path=path, base=base, model=peft_model, lora_config=config)


def make_trainable_tokens_adapter(
    base: TinyModel,
    path: Path,
    *,
    token_indices: list[int],
    target_modules: list[str] | None = None,
    seed: int = 0,
) -> TinyAdapter:
    """A PEFT trainable-tokens adapter (``peft_type: TRAINABLE_TOKENS``, no LoRA at all)
    whose rows were changed as training would."""
    from peft import TrainableTokensConfig, get_peft_model

    model = load_model(base.path)
    config = TrainableTokensConfig(
        target_modules=target_modules or ["embed_tokens"],
        token_indices=token_indices,
        base_model_name_or_path=str(base.path),
    )
    seed_everything(seed)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "trainable_tokens_delta" in name:
                param.add_(torch.randn_like(param) * 0.5)
    peft_model.eval()
    path.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(path))
    return TinyAdapter(path=path, base=base, model=peft_model, lora_config=config)
