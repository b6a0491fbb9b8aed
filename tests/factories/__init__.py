"""Test-data builders: tiny transformers models and PEFT adapters built from configs."""

from tests.factories.tiny_models import (
    TinyAdapter,
    TinyModel,
    load_model,
    make_bert_seq_cls,
    make_gpt2,
    make_llama,
    make_lora_adapter,
    make_t5,
    seed_everything,
)

__all__ = [
    "TinyAdapter",
    "TinyModel",
    "load_model",
    "make_bert_seq_cls",
    "make_gpt2",
    "make_llama",
    "make_lora_adapter",
    "make_t5",
    "seed_everything",
]
