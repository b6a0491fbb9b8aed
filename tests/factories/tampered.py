"""Adapters changed after PEFT saved them: one extra tensor, or a config option loreg does not
know. Both change what the adapter means, so every path must refuse them (never merge
without them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

UNKNOWN_TENSOR = "base_model.model.model.layers.0.self_attn.q_proj.lora_S.weight"
UNKNOWN_OPTION = "lora_output_scale"  # no PEFT release has it; a value of 2 would double deltas


def with_extra_tensor(src: Path, dst: Path, key: str = UNKNOWN_TENSOR) -> Path:
    """A copy of the adapter folder ``src`` with one more tensor (shape [4, 4]) under ``key``."""
    shutil.copytree(src, dst)
    weights = dst / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    tensors[key] = torch.ones(4, 4)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return dst


def with_config(src: Path, dst: Path, **fields: Any) -> Path:
    """A copy of the adapter folder ``src`` with ``fields`` set in adapter_config.json."""
    shutil.copytree(src, dst)
    cfg_path = dst / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(fields)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return dst


def tamper(src: Path, dst: Path, kind: str) -> Path:
    """``kind`` "tensor": an unknown tensor; "option": an unknown option with a value."""
    if kind == "tensor":
        return with_extra_tensor(src, dst)
    if kind == "option":
        return with_config(src, dst, **{UNKNOWN_OPTION: 2.0})
    raise ValueError(kind)
