"""Test-data builders: tiny transformers models and PEFT adapters built from configs."""

from tests.factories.tiny_models import (
    MOE_FAMILIES,
    MOE_TARGET_PARAMETERS,
    TinyAdapter,
    TinyModel,
    load_model,
    make_adalora_adapter,
    make_bert_seq_cls,
    make_gpt2,
    make_llama,
    make_lora_adapter,
    make_moe,
    make_t5,
    make_trainable_tokens_adapter,
    seed_everything,
)

__all__ = [
    "MOE_FAMILIES",
    "MOE_TARGET_PARAMETERS",
    "TinyAdapter",
    "TinyModel",
    "load_model",
    "make_adalora_adapter",
    "make_bert_seq_cls",
    "make_gpt2",
    "make_llama",
    "make_lora_adapter",
    "make_moe",
    "make_t5",
    "make_trainable_tokens_adapter",
    "seed_everything",
]
