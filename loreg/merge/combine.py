"""Combine several LoRA adapters on the same base into one new PEFT adapter folder.

Every method is defined on the adapters' dense deltas ``dW_i = scale_i * B_i @ A_i`` (in the
base weight's layout), weighted by ``w_i`` (see ``loreg.merge.methods``):

- ``linear`` and ``cat`` are exact: ``A = [A_1; A_2; ...]``, ``B = [w_1 s_1 B_1, w_2 s_2 B_2,
  ...]`` so ``B @ A = sum_i w_i dW_i``; the rank is the sum of the ranks and the new
  adapter's scale is 1 (``lora_alpha = r`` per module, no rslora).
- ``svd``, ``ties``, ``dare_linear``, ``dare_ties`` and ``magnitude_prune`` combine the dense
  deltas and store the best rank-k approximation (truncated SVD; Eckart-Young), ``k`` =
  ``svd_rank`` or the largest rank among the adapters touching the module; ``svd_clamp``
  optionally clips outliers.

Where this differs from PEFT's ``add_weighted_adapter`` (and why) is in docs/merging.md:
PEFT's ``linear`` combines A and B separately (``sqrt(w)`` on each, then sums), which is only
exact when the adapters' subspaces coincide and otherwise adds cross terms; its ``cat`` is
exact like loreg's; its SVD-based variants work on the deltas as loreg does but scale them
with each adapter's own scaling and then store the result under the *first* adapter's
scaling, which over- or under-scales when rslora or differing alphas are involved.
DoRA adapters are refused: their effective delta depends on the base weights, so they can
only be merged into a base, not combined into a plain LoRA adapter.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loreg.errors import Incompatible, InvalidInput
from loreg.formats.peft_keys import PEFT_PREFIX
from loreg.formats.types import LoraModule
from loreg.merge.delta import delta_weight, from_weight_layout, implied_weight_shape
from loreg.merge.device import resolve_device, to_device, to_host
from loreg.merge.methods import combine_deltas, tensor_seed, truncated_svd
from loreg.merge.options import MethodOptions
from loreg.merge.sources import (
    FLOAT_DTYPES,
    ST_DTYPES,
    AdapterSource,
    StagedDir,
    abandon,
    output_dtype,
    tensor_bytes,
    torch_dtype,
)
from loreg.merge.writer import (
    OutputFile,
    ShardedSafetensorsWriter,
    TensorSpec,
    adapter_writer,
    json_bytes,
    write_bytes_atomic,
)


@dataclass(frozen=True)
class CombineResult:
    """The new adapter folder, its files with digests, and the rank of each module."""

    out_dir: Path
    files: list[OutputFile]
    method: str
    ranks: dict[str, int]
    exact: bool
    seconds: float


def combine_adapters(
    adapters: Sequence[tuple[Path, float]],
    out_dir: Path,
    *,
    options: MethodOptions = MethodOptions(),
    dtype: str | None = None,
    device: str = "auto",
) -> CombineResult:
    """Write a new PEFT adapter at ``out_dir`` combining ``adapters`` (folder, weight).

    All adapters must be plain LoRA (no DoRA) on the same base; a module may be targeted by
    any subset of them. ``dtype`` (float16, bfloat16, float32) sets the new adapter's
    tensor dtype (default: the first adapter's). ``out_dir`` must not exist or be empty.
    """
    started = time.monotonic()
    if not adapters:
        raise InvalidInput("combine needs at least one adapter")
    inputs = _Inputs(
        [AdapterSource(Path(p)) for p, _ in adapters],
        [float(w) for _, w in adapters],
        resolve_device(device),
    )
    staged: StagedDir | None = None
    writer: ShardedSafetensorsWriter | None = None
    try:
        for src in inputs.sources:
            _refuse_uncombinable(src)
        out_st = output_dtype(dtype) or inputs.sources[0].desc.dtype
        if out_st not in FLOAT_DTYPES:
            out_st = "F32"
        tensors, ranks = _combine_modules(inputs, options)
        lora_bias = _has_bias(tensors)
        saved_config = _copy_saved_modules(inputs.sources, tensors)
        config = _config(
            inputs.sources[0].desc.config,
            ranks,
            saved_config,
            lora_bias,
            _trained_bias(inputs.sources),
        )
        host = _on_host(tensors, out_st)
        specs = [TensorSpec(key, ST_DTYPES[t.dtype], tuple(t.shape)) for key, t in host.items()]
        staged = StagedDir(Path(out_dir))
        writer = adapter_writer(staged.path, specs)
        for spec in specs:
            writer.write(spec.name, tensor_bytes(host[spec.name]))
        files = writer.finish()
        lineage = {
            **options.to_dict(),
            "parents": [{"path": str(p), "weight": float(w)} for p, w in adapters],
        }
        files.append(write_bytes_atomic(staged.path / "adapter_config.json", json_bytes(config)))
        files.append(write_bytes_atomic(staged.path / "loreg_combine.json", json_bytes(lineage)))
        final = staged.commit()
    except BaseException:
        abandon(staged, writer)
        raise
    finally:
        for src in inputs.sources:
            src.close()
    return CombineResult(
        out_dir=final,
        files=sorted(files, key=lambda f: f.path),
        method=options.method,
        ranks=ranks,
        exact=options.exact,
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class _Inputs:
    """The adapters being combined, their weights, and where their tensors are computed."""

    sources: list[AdapterSource]
    weights: list[float]
    device: torch.device

    def load(self, i: int, key: str) -> torch.Tensor:
        return to_device(self.sources[i].tensor(key), self.device).to(torch.float32)

    def load_a(self, i: int, m: LoraModule) -> torch.Tensor:
        """lora_A, with AdaLoRA's singular values folded in (``A * E``)."""
        a = self.load(i, m.a_key)
        return a * self.load(i, m.e_key) if m.e_key is not None else a


Group = list[tuple[int, LoraModule]]
"""One module as each adapter that targets it has it: (adapter index, module)."""


def _combine_modules(
    inputs: _Inputs, options: MethodOptions
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The new adapter's LoRA tensors (A, B and any bias per module) and each module's rank."""
    by_module: dict[str, Group] = {}
    for i, src in enumerate(inputs.sources):
        for m in src.desc.modules.values():
            by_module.setdefault(m.name, []).append((i, m))
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for name in sorted(by_module):
        group = by_module[name]
        first = group[0][1]
        shape = _common_shape(name, group)
        if options.exact:
            a_new, b_new = _concatenated(inputs, group)
        else:
            a_new, b_new = _best_rank(inputs, options, group, shape)
        a_key, b_key = _keys(first)
        tensors[a_key] = a_new
        tensors[b_key] = b_new
        ranks[name] = int(a_new.shape[0])
        bias = _bias(inputs, group)
        if bias is not None:
            tensors[_bias_key(name)] = bias
    if _has_bias(tensors):
        for name, group in by_module.items():  # PEFT expects a bias on every module then
            tensors.setdefault(
                _bias_key(name), torch.zeros(group[0][1].b_shape[0], device=inputs.device)
            )
    return tensors, ranks


def _common_shape(name: str, group: Group) -> tuple[int, ...]:
    """The base weight's shape, which every adapter's version of the module must agree on."""
    first = group[0][1]
    shape = implied_weight_shape(first)
    for _, m in group[1:]:
        if (m.kind, m.fan_in_fan_out, implied_weight_shape(m)) != (
            first.kind,
            first.fan_in_fan_out,
            shape,
        ):
            raise Incompatible(f"module {name} differs between adapters (kind, layout or shape)")
    return shape


def _concatenated(inputs: _Inputs, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """``A = [A_1; A_2; ...]``, ``B = [w_1 s_1 B_1, ...]``: ``B @ A`` is the weighted sum."""
    a_parts, b_parts = [], []
    for i, m in group:
        a_parts.append(inputs.load_a(i, m))
        b_parts.append(inputs.load(i, m.b_key) * (inputs.weights[i] * m.scale))
    return torch.cat(a_parts, dim=0), torch.cat(b_parts, dim=1)


def _best_rank(
    inputs: _Inputs, options: MethodOptions, group: Group, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The method's combination of the dense deltas, as its best rank-k factors."""
    first = group[0][1]
    deltas = [
        delta_weight(m, inputs.load_a(i, m), inputs.load(i, m.b_key), shape) for i, m in group
    ]
    combined = combine_deltas(
        deltas,
        [inputs.weights[i] for i, _ in group],
        options,
        generator=torch.Generator().manual_seed(tensor_seed(options.seed, first.base_weight)),
    )
    matrix = from_weight_layout(combined, first.kind, fan_in_fan_out=first.fan_in_fan_out)
    rank = options.svd_rank or max(m.r for _, m in group)
    b_mat, a_mat = truncated_svd(matrix, rank, clamp=options.svd_clamp)
    a_new = a_mat.reshape(a_mat.shape[0], *first.a_shape[1:])
    b_new = b_mat.reshape(b_mat.shape[0], a_mat.shape[0], *first.b_shape[2:])
    return a_new, b_new


def _bias(inputs: _Inputs, group: Group) -> torch.Tensor | None:
    """The weighted sum of the adapters' lora_B biases on this module, if any has one."""
    parts = [(i, m.bias_key, m.scale) for i, m in group if m.bias_key is not None]
    if not parts:
        return None
    total = torch.zeros(group[0][1].b_shape[0], device=inputs.device)
    for i, key, scale in parts:
        total = total + inputs.load(i, key) * (inputs.weights[i] * scale)
    return total


def _keys(m: LoraModule) -> tuple[str, str]:
    prefix = PEFT_PREFIX + m.name
    if m.kind == "embedding":
        return f"{prefix}.lora_embedding_A", f"{prefix}.lora_embedding_B"
    return f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"


def _bias_key(module: str) -> str:
    return f"{PEFT_PREFIX}{module}.lora_B.bias"


def _has_bias(tensors: dict[str, torch.Tensor]) -> bool:
    return any(key.endswith(".lora_B.bias") for key in tensors)


def _copy_saved_modules(
    sources: Sequence[AdapterSource], tensors: dict[str, torch.Tensor]
) -> list[str]:
    """Carry every adapter's modules_to_save over (one owner per tensor); the config's list."""
    saved_config: list[str] = []
    owners: dict[str, int] = {}
    for i, src in enumerate(sources):
        for saved in src.desc.saved_modules.values():
            for tname, key in saved.tensors.items():
                if tname in owners:
                    raise Incompatible(
                        f"{tname} is saved (modules_to_save) by more than one adapter;"
                        " combine those adapters without it"
                    )
                owners[tname] = i
                tensors[key] = sources[i].tensor(key)
        saved_config += [m for m in src.desc.modules_to_save if m not in saved_config]
    return saved_config


def _trained_bias(sources: Sequence[AdapterSource]) -> str:
    """The first adapter's ``bias`` setting that trained biases (``all``, ``lora_only``)."""
    return next(
        (
            str(src.desc.config["bias"])
            for src in sources
            if src.desc.config.get("bias") not in (None, "none")
        ),
        "none",
    )


def _on_host(tensors: dict[str, torch.Tensor], out_st: str) -> dict[str, torch.Tensor]:
    """Every tensor on the CPU, contiguous, floating ones cast to the output dtype; by key."""
    host: dict[str, torch.Tensor] = {}
    for key in sorted(tensors):
        t = to_host(tensors[key])
        if ST_DTYPES.get(t.dtype, "F32") in FLOAT_DTYPES:
            t = t.to(torch_dtype(out_st))
        host[key] = t.contiguous()
    return host


def _refuse_uncombinable(src: AdapterSource) -> None:
    """Adapters, and kinds of adapter parts, that ``combine`` does not carry into a new
    adapter (and everything that no path applies: ``require_applicable``)."""
    src.require_applicable("combine")
    if src.desc.use_dora or any(m.magnitude_key for m in src.desc.modules.values()):
        raise Incompatible(
            f"{src.path} is a DoRA adapter: its delta depends on the base weights, so"
            " it can be merged into a base but not combined into a LoRA adapter"
        )
    if src.desc.token_modules:
        raise Incompatible(
            f"{src.path} has trainable tokens (rows that replace embedding rows, not a delta);"
            " combine does not carry them into a new adapter yet: merge it into the base instead"
        )
    if any(m.kind == "parameter" for m in src.desc.modules.values()):
        raise Incompatible(
            f"{src.path} adapts parameters (target_parameters, e.g. fused experts); combine does"
            " not build such adapters yet: merge it into the base instead"
        )


# AdaLoRA's own fields: the combined adapter is a plain LoRA adapter
_ADALORA_FIELDS = (
    "init_r",
    "target_r",
    "tinit",
    "tfinal",
    "deltaT",
    "beta1",
    "beta2",
    "orth_reg_weight",
    "total_step",
)


def _config(
    base_config: dict[str, Any],
    ranks: dict[str, int],
    modules_to_save: list[str],
    bias: bool,
    trained_bias: str,
) -> dict[str, Any]:
    """The new adapter_config.json: per-module rank, ``lora_alpha = r`` (scale 1)."""
    config = json.loads(json.dumps(base_config))
    for key in _ADALORA_FIELDS:
        config.pop(key, None)
    common = Counter(ranks.values()).most_common(1)[0][0] if ranks else 1
    config.update(
        {
            "peft_type": "LORA",
            "r": common,
            "lora_alpha": common,
            "use_rslora": False,
            "use_dora": False,
            "rank_pattern": {re.escape(n): r for n, r in sorted(ranks.items()) if r != common},
            "alpha_pattern": {re.escape(n): r for n, r in sorted(ranks.items()) if r != common},
            "target_modules": sorted(ranks),
            "modules_to_save": modules_to_save or None,
            "lora_bias": bias,
            "bias": trained_bias,
        }
    )
    for key in ("layers_to_transform", "layers_pattern", "exclude_modules"):
        config.pop(key, None)
    return config
