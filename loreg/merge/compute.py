"""The arithmetic of one planned tensor, on the merge's device, in float32.

Plain LoRA summed with ``linear`` / ``cat`` is applied a block of rows at a time (each block
converted, updated in place and cast back while it is in cache, never a dense delta of the
whole weight); other methods, DoRA, biases and trainable tokens work on the whole tensor;
parameter LoRA on fused experts works one expert at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from loreg.formats.targets import BoundParameter
from loreg.formats.types import LoraModule
from loreg.merge.delta import (
    bias_delta,
    delta_weight,
    dora_merge,
    from_weight_layout,
    to_weight_layout,
)
from loreg.merge.device import to_device, to_host
from loreg.merge.methods import combine_deltas, tensor_seed, truncated_svd
from loreg.merge.options import MethodOptions
from loreg.merge.plan import TensorPlan
from loreg.merge.sources import AdapterSource, torch_dtype

_BLOCK_ELEMENTS = 1 << 19  # rows per block: ~2 MiB of float32, fits in cache
_EXPERT_CACHE = 8  # parameter LoRA factors kept between the tensors of one layer's experts


class TensorMerger:
    """The arithmetic for one computed tensor, on ``device``, in float32."""

    def __init__(
        self,
        adapters: Sequence[AdapterSource],
        weights: Sequence[float],
        options: MethodOptions,
        device: torch.device,
    ) -> None:
        self.adapters = adapters
        self.weights = weights
        self.options = options
        self.device = device
        self._experts: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _load(self, i: int, key: str) -> torch.Tensor:
        return to_device(self.adapters[i].tensor(key), self.device).to(torch.float32)

    def _load_a(self, i: int, m: LoraModule) -> torch.Tensor:
        """lora_A, with AdaLoRA's singular values folded in (``A * E``, row by row)."""
        a = self._load(i, m.a_key)
        if m.e_key is not None:
            a = a * self._load(i, m.e_key).reshape(-1, *([1] * (a.dim() - 1)))
        return a

    def compute(self, plan: TensorPlan, base: torch.Tensor) -> torch.Tensor:
        if plan.replace is not None:
            i, key = plan.replace
            base = self.adapters[i].tensor(key)
        base = to_device(base, self.device)
        out_dtype = torch_dtype(plan.out.dtype)
        dora = any(m.magnitude_key is not None for _, m in plan.loras)
        if plan.experts:
            out = self._experts_sum(plan, base, out_dtype)
        elif plan.loras and self.options.exact and not dora and not plan.tokens:
            out = self._blocked_sum(plan, base, out_dtype)
        else:
            w = base.to(torch.float32, copy=True)
            if plan.loras:
                self._apply_loras(plan, w)
            for i, module in plan.biases:  # bias tensors are planned apart from weights
                assert module.bias_key is not None
                w.add_(bias_delta(module, self._load(i, module.bias_key)), alpha=self.weights[i])
            for i, tm in plan.tokens:  # PEFT's index_copy: these rows take the new values
                rows = self._load(i, tm.key).to(w.dtype)
                index = torch.tensor(tm.indices, dtype=torch.long, device=w.device)
                w.index_copy_(0, index, rows)
            out = w.to(out_dtype)
        return to_host(out)

    def _expert_factors(
        self, i: int, bp: BoundParameter, expert: int
    ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """``(alpha, left, right)``: expert ``expert``'s delta ``alpha * left @ right`` in the
        parameter's layout (``[out, in]`` when swapped, else ``[in, out]``)."""
        m = bp.module
        key = (i, m.a_key)
        if key not in self._experts:
            # one read per wrapper: the experts of a layer come one tensor after another
            a, b = self._load_a(i, m), self._load(i, m.b_key)
            experts, r = m.num_experts, m.r
            self._experts[key] = (
                a.reshape(experts, r, a.shape[-1]),  # expert e: rows e*r .. e*r+r-1
                b.reshape(b.shape[0], r, experts).permute(2, 0, 1).contiguous(),  # e, e+E, ...
            )
            while len(self._experts) > _EXPERT_CACHE:
                self._experts.pop(next(iter(self._experts)))
        a3, b3 = self._experts[key]
        a_e, b_e = a3[expert], b3[expert]
        alpha = self.weights[i] * m.scale
        return (alpha, b_e, a_e) if bp.swapped else (alpha, a_e.T, b_e.T)

    def _experts_sum(
        self, plan: TensorPlan, base: torch.Tensor, out_dtype: torch.dtype
    ) -> torch.Tensor:
        """Add parameter-LoRA deltas, one expert at a time (float32 per expert, in place).

        A tensor that is the whole fused parameter ``[E, d1, d2]`` gets every expert's delta;
        a per-expert tensor (``param[e, rows]``) gets the rows of expert ``e``'s delta.
        """
        out = torch.empty(base.shape, dtype=out_dtype, device=base.device)
        if base.numel() == 0:
            return out
        whole = [(i, bp) for i, bp, piece in plan.experts if piece.expert is None]
        if whole and base.dim() == 2:  # a 2-D parameter: one "expert", [out, in]
            block = base.to(torch.float32, copy=True)
            for i, bp in whole:
                alpha, left, right = self._expert_factors(i, bp, 0)
                block.addmm_(left, right, alpha=alpha)
            out.copy_(block)
            return out
        if whole:
            experts = base.shape[0]
            for e in range(experts):
                block = base[e].to(torch.float32, copy=True)
                for i, bp in whole:
                    alpha, left, right = self._expert_factors(i, bp, e)
                    block.addmm_(left, right, alpha=alpha)
                out[e].copy_(block)
            return out
        block = base.to(torch.float32, copy=True)
        for i, bp, piece in plan.experts:
            assert piece.expert is not None and piece.rows is not None
            alpha, left, right = self._expert_factors(i, bp, piece.expert)
            block.addmm_(left[piece.rows[0] : piece.rows[1]], right, alpha=alpha)
        out.copy_(block)
        return out

    def _factors(self, plan: TensorPlan) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
        """``(alpha, left, right)`` with ``delta = alpha * left @ right`` in W's 2-D layout."""
        factors = []
        for i, m in plan.loras:
            a, b = self._load_a(i, m), self._load(i, m.b_key)
            alpha = self.weights[i] * m.scale
            if m.kind == "conv":
                factors.append((alpha, b.reshape(b.shape[0], -1), a.reshape(a.shape[0], -1)))
            elif m.kind == "embedding" or m.fan_in_fan_out:
                factors.append((alpha, a.T, b.T))
            else:
                factors.append((alpha, b, a))
        return factors

    def _blocked_sum(
        self, plan: TensorPlan, base: torch.Tensor, out_dtype: torch.dtype
    ) -> torch.Tensor:
        """``W + sum alpha_i * left_i @ right_i``, a block of rows at a time.

        Each block is converted to float32, updated in place and cast to the output dtype
        while it is still in cache: no float32 copy of the whole weight, no dense delta.
        """
        out = torch.empty(base.shape, dtype=out_dtype, device=base.device)
        if base.numel() == 0:
            return out
        src2d = base.reshape(base.shape[0], -1)
        out2d = out.view(out.shape[0], -1)
        factors = self._factors(plan)
        step = max(1, _BLOCK_ELEMENTS // max(1, src2d.shape[1]))
        if base.device.type != "cpu":
            step = src2d.shape[0]  # one block: the GPU has the bandwidth, not the cache
        for start in range(0, src2d.shape[0], step):
            stop = min(start + step, src2d.shape[0])
            block = src2d[start:stop].to(torch.float32, copy=True)
            for alpha, left, right in factors:
                block.addmm_(left[start:stop], right, alpha=alpha)
            out2d[start:stop].copy_(block)
        return out

    def _apply_loras(self, plan: TensorPlan, w: torch.Tensor) -> None:
        shape = tuple(w.shape)
        deltas: list[torch.Tensor] = []
        for i, m in plan.loras:
            delta = delta_weight(m, self._load_a(i, m), self._load(i, m.b_key), shape)
            if m.magnitude_key is not None:
                mag = self._load(i, m.magnitude_key)
                delta = dora_merge(w, delta, mag, m.kind, fan_in_fan_out=m.fan_in_fan_out) - w
            deltas.append(delta)
        weights = [self.weights[i] for i, _ in plan.loras]
        generator = torch.Generator().manual_seed(tensor_seed(self.options.seed, plan.info.name))
        combined = combine_deltas(deltas, weights, self.options, generator=generator)
        if self.options.method == "svd":
            m0 = plan.loras[0][1]
            rank = self.options.svd_rank or max(m.r for _, m in plan.loras)
            matrix = from_weight_layout(combined, m0.kind, fan_in_fan_out=m0.fan_in_fan_out)
            b, a = truncated_svd(matrix, rank, clamp=self.options.svd_clamp)
            combined = to_weight_layout(
                b @ a, m0.kind, fan_in_fan_out=m0.fan_in_fan_out, weight_shape=shape
            )
        w.add_(combined)
