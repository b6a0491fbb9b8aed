"""A small registry filled through the API (the way users fill it): one tiny base model and
``adapters`` adapters with ``versions`` versions each, pushed with loreg's Python client."""

from __future__ import annotations

import json
from pathlib import Path

MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
HIDDEN = 64


def build_base(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tensors = {f"model.layers.0.self_attn.{m}.weight": torch.randn(HIDDEN, HIDDEN) for m in MODULES}
    tensors["model.embed_tokens.weight"] = torch.randn(128, HIDDEN)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))


def build_adapter(folder: Path, seed: int, rank: int) -> None:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    lora = {}
    targets = list(MODULES[: 2 + seed % 3])
    for m in targets:
        key = f"base_model.model.model.layers.0.self_attn.{m}"
        lora[f"{key}.lora_A.weight"] = torch.randn(rank, HIDDEN)
        lora[f"{key}.lora_B.weight"] = torch.randn(HIDDEN, rank)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(lora, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": rank,
                "lora_alpha": 2 * rank,
                "target_modules": targets,
                "base_model_name_or_path": "bench/tiny-llama",
            }
        )
    )
    (folder / "README.md").write_text(
        f"# bench adapter {seed}\n\nSynthetic, for the API benchmark.\n"
    )


def seed_registry(
    url: str, token: str, work: Path, *, adapters: int = 20, versions: int = 2
) -> list[str]:
    """Fill the registry at ``url``; returns the adapters' ``ns/name``."""
    from loreg.client import Client

    base = work / "base"
    if not base.exists():
        build_base(base)
    names = []
    with Client(url, token, home=work / "client-home") as client:
        client.register_base(base, "bench/tiny-llama", upload=False)
        for a in range(adapters):
            name = f"admin/bench-{a:03d}"
            names.append(name)
            for v in range(versions):
                folder = work / "adapters" / f"{a}-{v}"
                if not folder.exists():
                    build_adapter(folder, seed=a * 100 + v, rank=(4, 8, 16)[a % 3])
                client.push(
                    folder,
                    f"{name}:v{v + 1}",
                    base="bench/tiny-llama",
                    labels={"dataset": f"ds-{a % 5}", "run": str(v)},
                    description=f"bench adapter {a}",
                    public=(a % 2 == 0),
                )
    return names
