"""What only an adapter's tensor bytes can tell: values, ranks, and the size of each delta.

The push checked the header against the base manifest (shapes, names); these checks read
the tensors (through ``AdapterSource``, one at a time): every LoRA module's A and B present,
ranks that agree with the config (``r`` / ``rank_pattern``), every value finite. For each
module they report the norms of A, B and of the delta ``scale * B @ A`` (without forming
it), which the web page shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from loreg.formats.targets import BoundParameter
from loreg.formats.types import LoraModule
from loreg.merge.sources import TORCH_DTYPES, AdapterSource


def delta_norm(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """||scale * B @ A||_F without forming B @ A: sqrt(trace((BᵀB)(AAᵀ))), r x r work."""
    a2 = a.reshape(a.shape[0], -1).double()
    b2 = b.reshape(b.shape[0], -1).double()
    if b2.shape[1] != a2.shape[0]:  # embeddings store A [r, vocab], B [dim, r]; conv likewise
        b2 = b.reshape(-1, a.shape[0]).double()
    gram = (b2.T @ b2) * (a2 @ a2.T)
    return abs(scale) * math.sqrt(max(float(gram.sum()), 0.0))


def experts_delta_norm(a: torch.Tensor, b: torch.Tensor, scale: float, experts: int) -> float:
    """||delta||_F of a parameter LoRA over all experts: A's rows and B's columns are
    grouped per expert as PEFT lays them out (``[E*r, in]`` / ``[out, r, E]``)."""
    r = a.shape[0] // experts
    a3 = a.double().reshape(experts, r, -1)
    b3 = b.double().reshape(b.shape[0], r, experts).permute(2, 0, 1)  # [E, out, r]
    gram = (b3.transpose(1, 2) @ b3) * (a3 @ a3.transpose(1, 2))
    return abs(scale) * math.sqrt(max(float(gram.sum()), 0.0))


def error_finding(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """A finding in the shape validation reports use (``severity``, ``code``, ``message``)."""
    return {"severity": "error", "code": code, "message": message, **extra}


@dataclass
class TensorChecks:
    """Problems found in the tensors, and per-module statistics (by module name)."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _is_float(dtype: str) -> bool:
    known = TORCH_DTYPES.get(dtype)
    return known is not None and known.is_floating_point


def check_tensors(
    source: AdapterSource, bound: Mapping[str, BoundParameter] | None = None
) -> TensorChecks:
    """Read the adapter's tensors and check them (see the module docstring).

    ``bound``: parameter LoRA modules bound to the base (their rank and experts come from
    the base's shapes); unbound ones are left to the compatibility report.
    """
    bound = bound or {}
    desc = source.desc
    found = TensorChecks()
    keys = set(desc.tensors)
    for key in sorted(keys):
        if not _is_float(desc.tensors[key].dtype):
            continue  # only floating values can be NaN or infinite
        t = source.tensor(key)
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            found.problems.append(
                error_finding(
                    "non_finite", f"{key} has {bad} NaN/inf value(s)", tensor=key, count=bad
                )
            )
    module: LoraModule
    for name, module in sorted(desc.modules.items()):
        if module.a_key not in keys or module.b_key not in keys:
            found.problems.append(
                error_finding("missing_tensor", f"{name}: lora A or B is missing", module=name)
            )
            continue
        if module.kind == "parameter":
            if name not in bound:
                continue
            module = bound[name].module
        a = source.tensor(module.a_key).float()
        b = source.tensor(module.b_key).float()
        if module.e_key is not None and module.e_key in keys:  # AdaLoRA: A * E
            a = a * source.tensor(module.e_key).float().reshape(-1, 1)
        rank_a = a.shape[0] // module.num_experts
        rank_b = b.shape[1] // module.num_experts if b.dim() >= 2 else -1
        if module.kind == "embedding":
            rank_b = b.shape[-1]
        if rank_a != module.r or rank_b != module.r:
            found.problems.append(
                error_finding(
                    "rank_mismatch",
                    f"{name}: tensors have rank {rank_a}/{rank_b}, the config says {module.r}",
                    module=name,
                    expected=module.r,
                    found=[rank_a, rank_b],
                )
            )
            continue
        try:
            norm = (
                experts_delta_norm(a, b, module.scale, module.num_experts)
                if module.kind == "parameter"
                else delta_norm(a, b, module.scale)
            )
        except RuntimeError:
            norm = float("nan")
        found.stats[name] = {
            "kind": module.kind,
            "r": module.r,
            "alpha": module.alpha,
            "scale": module.scale,
            "a_norm": float(a.norm()),
            "b_norm": float(b.norm()),
            "delta_norm": norm,
        }
        if module.kind == "parameter":
            found.stats[name].update(parameter=bound[name].parameter, experts=module.num_experts)
    return found
