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


def _keys(m: LoraModule) -> tuple[str, str]:
    prefix = PEFT_PREFIX + m.name
    if m.kind == "embedding":
        return f"{prefix}.lora_embedding_A", f"{prefix}.lora_embedding_B"
    return f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"


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
    dev = resolve_device(device)
    sources = [AdapterSource(Path(p)) for p, _ in adapters]
    weights = [float(w) for _, w in adapters]
    staged: StagedDir | None = None
    writer: ShardedSafetensorsWriter | None = None
    try:
        for src in sources:
            src.require_applicable("combine")
            if src.desc.use_dora or any(m.magnitude_key for m in src.desc.modules.values()):
                raise Incompatible(
                    f"{src.path} is a DoRA adapter: its delta depends on the base weights, so"
                    " it can be merged into a base but not combined into a LoRA adapter"
                )
            _refuse_uncombinable(src)
        out_st = output_dtype(dtype) or sources[0].desc.dtype
        if out_st not in FLOAT_DTYPES:
            out_st = "F32"
        by_module: dict[str, list[tuple[int, LoraModule]]] = {}
        for i, src in enumerate(sources):
            for m in src.desc.modules.values():
                by_module.setdefault(m.name, []).append((i, m))
        tensors: dict[str, torch.Tensor] = {}
        ranks: dict[str, int] = {}
        any_bias = False
        for name in sorted(by_module):
            group = by_module[name]
            first = group[0][1]
            shape = implied_weight_shape(first)
            for _, m in group[1:]:
                if (m.kind, m.fan_in_fan_out, implied_weight_shape(m)) != (
                    first.kind,
                    first.fan_in_fan_out,
                    shape,
                ):
                    raise Incompatible(
                        f"module {name} differs between adapters (kind, layout or shape)"
                    )

            def load(i: int, key: str) -> torch.Tensor:
                return to_device(sources[i].tensor(key), dev).to(torch.float32)

            def load_a(i: int, m: LoraModule) -> torch.Tensor:
                a = load(i, m.a_key)  # AdaLoRA: fold the singular values in (A * E)
                return a * load(i, m.e_key) if m.e_key is not None else a

            if options.exact:
                a_parts, b_parts = [], []
                for i, m in group:
                    a, b = load_a(i, m), load(i, m.b_key)
                    a_parts.append(a)
                    b_parts.append(b * (weights[i] * m.scale))
                a_new = torch.cat(a_parts, dim=0)
                b_new = torch.cat(b_parts, dim=1)
            else:
                deltas = [
                    delta_weight(m, load_a(i, m), load(i, m.b_key), shape) for i, m in group
                ]
                combined = combine_deltas(
                    deltas,
                    [weights[i] for i, _ in group],
                    options,
                    generator=torch.Generator().manual_seed(
                        tensor_seed(options.seed, first.base_weight)
                    ),
                )
                matrix = from_weight_layout(
                    combined, first.kind, fan_in_fan_out=first.fan_in_fan_out
                )
                rank = options.svd_rank or max(m.r for _, m in group)
                b_mat, a_mat = truncated_svd(matrix, rank, clamp=options.svd_clamp)
                a_new = a_mat.reshape(a_mat.shape[0], *first.a_shape[1:])
                b_new = b_mat.reshape(b_mat.shape[0], a_mat.shape[0], *first.b_shape[2:])
            a_key, b_key = _keys(first)
            tensors[a_key] = a_new
            tensors[b_key] = b_new
            ranks[name] = int(a_new.shape[0])
            bias_parts = [(i, m) for i, m in group if m.bias_key is not None]
            if bias_parts:
                any_bias = True
                bias = sum(
                    (
                        load(i, m.bias_key) * (weights[i] * m.scale)
                        for i, m in bias_parts
                        if m.bias_key
                    ),
                    torch.zeros(first.b_shape[0], device=dev),
                )
                tensors[f"{PEFT_PREFIX}{name}.lora_B.bias"] = bias
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
        if any_bias:
            for name in by_module:  # PEFT expects a bias on every module once lora_bias is set
                tensors.setdefault(
                    f"{PEFT_PREFIX}{name}.lora_B.bias",
                    torch.zeros(by_module[name][0][1].b_shape[0], device=dev),
                )
        trained_bias = next(
            (str(src.desc.config["bias"]) for src in sources
             if src.desc.config.get("bias") not in (None, "none")),
            "none",
        )
        config = _config(sources[0].desc.config, ranks, saved_config, any_bias, trained_bias)
        specs: list[TensorSpec] = []
        host: dict[str, torch.Tensor] = {}
        for key in sorted(tensors):
            t = to_host(tensors[key])
            st = ST_DTYPES.get(t.dtype, "F32")
            if st in FLOAT_DTYPES:
                t = t.to(torch_dtype(out_st))
                st = out_st
            host[key] = t.contiguous()
            specs.append(TensorSpec(key, st, tuple(t.shape)))
        staged = StagedDir(Path(out_dir))
        writer = adapter_writer(staged.path, specs)
        for spec in specs:
            writer.write(spec.name, tensor_bytes(host[spec.name]))
        files = writer.finish()
        files.append(write_bytes_atomic(staged.path / "adapter_config.json", json_bytes(config)))
        lineage = {
            **options.to_dict(),
            "parents": [{"path": str(p), "weight": float(w)} for p, w in adapters],
        }
        files.append(write_bytes_atomic(staged.path / "loreg_combine.json", json_bytes(lineage)))
        final = staged.commit()
    except BaseException:
        abandon(staged, writer)
        raise
    finally:
        for src in sources:
            src.close()
    return CombineResult(
        out_dir=final,
        files=sorted(files, key=lambda f: f.path),
        method=options.method,
        ranks=ranks,
        exact=options.exact,
        seconds=time.monotonic() - started,
    )


def _refuse_uncombinable(src: AdapterSource) -> None:
    """Kinds of adapter parts that ``combine`` does not carry into a new adapter."""
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
    "init_r", "target_r", "tinit", "tfinal", "deltaT", "beta1", "beta2", "orth_reg_weight",
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
