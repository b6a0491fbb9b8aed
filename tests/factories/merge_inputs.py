"""Builders and PEFT oracles for the merge engine's tests.

The oracle is always PEFT itself: ``merge_and_unload()`` on a freshly loaded ``PeftModel``
for single merges, ``get_delta_weight`` per layer for multi-adapter combinations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tests.factories.tiny_models import TinyModel, load_model

PEFT_PREFIX = "base_model.model."


def perturb_saved_modules(adapter_path: Path, *, scale: float = 0.5, seed: int = 0) -> list[str]:
    """Change the ``modules_to_save`` copies in a saved adapter, as training would.

    PEFT saves those modules as exact copies of the base when they were never trained; a
    merge that ignored them would pass unnoticed. Returns the keys changed.
    """
    path = adapter_path / "adapter_model.safetensors"
    tensors = load_file(path)
    g = torch.Generator().manual_seed(seed)
    changed = []
    for key, t in tensors.items():
        if "lora_" in key or not t.is_floating_point():
            continue
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32) * scale
        tensors[key] = (t.float() + noise).to(t.dtype)
        changed.append(key)
    save_file(tensors, path, metadata={"format": "pt"})
    return changed


def load_peft(base: TinyModel, adapters: list[Path], *, vocab: int | None = None) -> Any:
    """A fresh ``PeftModel`` on a fresh copy of ``base`` with ``adapters`` named a0, a1, ..."""
    from peft import PeftModel

    model = load_model(base.path)
    if vocab is not None:
        model.resize_token_embeddings(vocab)
    peft_model = PeftModel.from_pretrained(model, str(adapters[0]), adapter_name="a0")
    for i, path in enumerate(adapters[1:], start=1):
        peft_model.load_adapter(str(path), adapter_name=f"a{i}")
    return peft_model.eval()


def peft_merged_state(
    base: TinyModel, adapter: Path, *, vocab: int | None = None
) -> dict[str, torch.Tensor]:
    """PEFT's ``merge_and_unload()`` state dict for one adapter."""
    model = load_peft(base, [adapter], vocab=vocab).merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def peft_merged_checkpoint(
    base: TinyModel, adapter: Path, out: Path, *, vocab: int | None = None
) -> tuple[Any, dict[str, torch.Tensor]]:
    """PEFT's ``merge_and_unload()`` model and its tensors as ``save_pretrained`` stores them.

    transformers saves in the checkpoint's own layout (per-expert tensors for Qwen3-MoE and
    Mixtral, tied weights once), so the tensors compare name by name with a loreg merge.
    """
    model = load_peft(base, [adapter], vocab=vocab).merge_and_unload()
    model.save_pretrained(str(out))
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return model, tensors


def peft_deltas(peft_model: Any, names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """``{base weight name: {adapter name: get_delta_weight}}`` for every LoRA layer."""
    from peft.tuners.lora import LoraLayer

    out: dict[str, dict[str, torch.Tensor]] = {}
    for mod_name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        base_name = mod_name.removeprefix(PEFT_PREFIX) + ".weight"
        for name in names:
            if name in module.lora_A or name in module.lora_embedding_A:
                # every concrete LoRA layer defines it; the LoraLayer base does not declare it
                delta = module.get_delta_weight(name).detach().float()  # type: ignore[attr-defined]
                out.setdefault(base_name, {})[name] = delta
    return out
