"""Adapter kinds beyond plain LoRA, each on a tiny base built from a config: the cases the
PEFT-oracle tests of the engine, the CLI and the workers share.

- ``moe-<family>``: LoRA on the fused expert parameters (``target_parameters``) of the MoE
  families transformers 5 ships, plus LoRA on ``q_proj`` (or on every linear layer, the
  router included);
- ``tokens-*``: trainable tokens on tied and untied embeddings: next to LoRA
  (``trainable_token_indices``, as a list or per layer, with a grown vocabulary) and alone
  (PEFT's ``TrainableTokensConfig``);
- ``adalora*``: AdaLoRA, before and after rank allocation (``rank_pattern`` masks);
- ``bias-*``: LoRA with ``bias="all"`` / ``"lora_only"`` (trained biases saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.factories.merge_inputs import perturb_saved_modules
from tests.factories.tiny_models import (
    MOE_FAMILIES,
    MOE_TARGET_PARAMETERS,
    TinyModel,
    make_adalora_adapter,
    make_bert_seq_cls,
    make_llama,
    make_lora_adapter,
    make_moe,
    make_trainable_tokens_adapter,
)


@dataclass
class KindCase:
    base: TinyModel
    adapter: Path
    vocab: int | None = None  # the vocabulary the adapter grew to (PEFT loads need it)
    input_ids: tuple[int, ...] = (1, 5, 9, 33, 7, 2)


KINDS = (
    *(f"moe-{f}" for f in MOE_FAMILIES),
    "moe-mixtral-all-linear",
    "tokens-untied",
    "tokens-tied",
    "tokens-peft-type-untied",
    "tokens-peft-type-tied",
    "tokens-per-layer-untied",
    "tokens-per-layer-tied",
    "tokens-output-layer-tied",
    "tokens-grown-untied",
    "tokens-grown-tied",
    "adalora",
    "adalora-allocated",
    "bias-all",
    "bias-lora-only",
)


def build_kind(kind: str, root: Path) -> KindCase:
    """Base and adapter for ``kind`` (one of ``KINDS``) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    if kind == "moe-mixtral-all-linear":
        # all-linear reaches the router, mlp.gate, which Mixtral checkpoints store as
        # block_sparse_moe.gate: renamed by transformers' rules, like the experts
        base = make_moe(root / "base", "mixtral")
        adapter = make_lora_adapter(
            base,
            root / "adapter",
            target_modules="all-linear",
            target_parameters=MOE_TARGET_PARAMETERS["mixtral"],
        )
        return KindCase(base, adapter.path)
    if kind.startswith("moe-"):
        family = kind.removeprefix("moe-")
        base = make_moe(root / "base", family)
        adapter = make_lora_adapter(
            base,
            root / "adapter",
            target_modules=["q_proj"],
            target_parameters=MOE_TARGET_PARAMETERS[family],
        )
        return KindCase(base, adapter.path)
    if kind.startswith("tokens-"):
        tied = kind.endswith("-tied")
        base = make_llama(root / "base", tie_word_embeddings=tied)
        ids: tuple[int, ...] = (1, 3, 5, 6, 7, 9, 33)
        options: dict[str, object] = {"target_modules": ["q_proj", "v_proj"]}
        vocab = None
        if kind.startswith("tokens-peft-type"):  # no LoRA: PEFT's TrainableTokensConfig
            tokens = make_trainable_tokens_adapter(base, root / "adapter", token_indices=[3, 5, 7])
            return KindCase(base, tokens.path, input_ids=ids)
        if kind.startswith("tokens-per-layer"):
            options["trainable_token_indices"] = {"embed_tokens": [3, 5], "lm_head": [6, 9]}
        elif kind == "tokens-output-layer-tied":
            options["trainable_token_indices"] = {"lm_head": [6, 9]}
        elif kind.startswith("tokens-grown"):
            options["trainable_token_indices"] = [3, 128, 129]
            options["grow_vocab_to"] = vocab = 130
            ids = (*ids, 128, 129)
        else:
            options["trainable_token_indices"] = [3, 5, 7]
        adapter = make_lora_adapter(base, root / "adapter", **options)  # type: ignore[arg-type]
        return KindCase(base, adapter.path, vocab=vocab, input_ids=ids)
    if kind.startswith("adalora"):
        base = make_llama(root / "base")
        masks = {"q_proj": [True, False, True, True, False, False]} if "allocated" in kind else None
        adapter = make_adalora_adapter(base, root / "adapter", masks=masks)
        return KindCase(base, adapter.path)
    if kind.startswith("bias-"):
        base = make_bert_seq_cls(root / "base")
        bias = "all" if kind == "bias-all" else "lora_only"
        adapter = make_lora_adapter(
            base, root / "adapter", target_modules=["query", "value"], bias=bias
        )
        assert perturb_saved_modules(adapter.path)  # biases and classifier, as training would
        return KindCase(base, adapter.path)
    raise ValueError(f"unknown adapter kind {kind!r}")
