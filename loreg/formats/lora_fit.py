"""Does one LoRA module fit the base weight it adapts?

The factors' shapes follow from the weight's: ``[r, in]`` / ``[out, r]`` against ``[out, in]``;
transposed for ``fan_in_fan_out`` (GPT-2 ``Conv1D``); ``[r, vocab]`` / ``[dim, r]`` for
embeddings; ``[r, in, k...]`` / ``[out, r, 1...]`` for convolutions. The rank the tensors
have must be the config's (``r`` / ``rank_pattern``); DoRA's magnitude and lora_B's bias
must be one value per output. Every disagreement is a finding that names both shapes.
"""

from __future__ import annotations

import math
import re

from loreg.formats.base_lookup import BaseLookup, layer_hint
from loreg.formats.report import CompatibilityReport, Finding, Shape, fmt_shape
from loreg.formats.types import AdapterDescription, LoraModule

Expectation = tuple[Shape, Shape, Shape | None, bool]
"""Expected (lora_A, lora_B, magnitude or bias, transposed) shapes."""


def _lora_expectations(mod: LoraModule, w: Shape, r: int) -> Expectation | str:
    """Expected (A, B, magnitude, transposed) shapes for a module on weight ``w``, or why not."""
    if mod.kind == "embedding":
        if len(w) != 2:
            return f"base weight is {fmt_shape(w)}, not a 2-D embedding"
        return (r, w[0]), (w[1], r), (w[1],), False
    if mod.kind == "conv":
        if len(w) < 3:
            return f"base weight is {fmt_shape(w)}, not a convolution kernel"
        ones = (1,) * (len(w) - 2)
        return (r, *w[1:]), (w[0], r, *ones), (w[0],), False
    if len(w) != 2:
        return f"base weight is {fmt_shape(w)}, not a 2-D linear weight"
    if mod.fan_in_fan_out:
        return (r, w[0]), (w[1], r), (w[1],), True
    return (r, w[1]), (w[0], r), (w[0],), False


def check_lora(
    mod: LoraModule, adapter: AdapterDescription, base: BaseLookup, report: CompatibilityReport
) -> None:
    """One LoRA module against the base weight it adapts: rank, orientation, every shape."""
    base_name = base.name(mod.base_weight)
    saved = adapter.saved_shape(mod.base_weight)
    w = saved if saved is not None else base.shape(mod.base_weight)
    if w is None:
        report.add(
            Finding(
                "error",
                "missing_base_module",
                f"no base tensor {base_name!r} for this LoRA module" + layer_hint(base_name, base),
                module=mod.name,
                tensor=base_name,
            )
        )
        return
    r = _check_rank(mod, adapter, report)
    exp = _lora_expectations(mod, w, r)
    if isinstance(exp, str):
        report.add(
            Finding("error", "shape_mismatch", exp, module=mod.name, tensor=base_name, found=w)
        )
        return
    if _check_orientation(mod, w, r, base_name, exp, report):
        return
    _check_factor_shapes(mod, adapter, w, base_name, exp, report)


def _check_rank(mod: LoraModule, adapter: AdapterDescription, report: CompatibilityReport) -> int:
    """The rank as the tensors have it, checked against the config (with its patterns)."""
    a_rank = mod.a_shape[0] if mod.a_shape else None
    b_rank = mod.b_shape[1] if len(mod.b_shape) > 1 else None
    if a_rank != mod.r or b_rank != mod.r:
        src = (
            "rank_pattern"
            if any(
                re.match(rf"(.*\.)?({k})$", mod.name)
                for k in adapter.rank_pattern
                if _valid_regex(k)
            )
            else "r"
        )
        report.add(
            Finding(
                "error",
                "rank_mismatch",
                f"config ({src}) says r={mod.r} but lora_A is {fmt_shape(mod.a_shape)} and"
                f" lora_B is {fmt_shape(mod.b_shape)}",
                module=mod.name,
                expected=(mod.r,),
                found=(a_rank or 0, b_rank or 0),
            )
        )
    if mod.e_key is not None:
        e_shape = adapter.tensors[mod.e_key].shape if mod.e_key in adapter.tensors else None
        if e_shape != (a_rank, 1):
            report.add(
                Finding(
                    "error",
                    "shape_mismatch",
                    f"AdaLoRA lora_E is {fmt_shape(e_shape)}, expected [{a_rank}, 1]",
                    module=mod.name,
                    tensor=mod.e_key,
                )
            )
    return a_rank if a_rank is not None else mod.r


def _check_orientation(
    mod: LoraModule,
    w: Shape,
    r: int,
    base_name: str,
    exp: Expectation,
    report: CompatibilityReport,
) -> bool:
    """A linear module whose shapes fit the weight only transposed (``fan_in_fan_out`` set
    wrongly, or a GPT-2 ``Conv1D`` it was not set for); whether that was the finding."""
    if mod.kind != "linear" or (mod.a_shape, mod.b_shape) == exp[:2]:
        return False
    flipped = _lora_expectations(
        LoraModule(**{**mod.__dict__, "fan_in_fan_out": not mod.fan_in_fan_out}), w, r
    )
    if isinstance(flipped, str) or (mod.a_shape, mod.b_shape) != flipped[:2]:
        return False
    if not mod.fan_in_fan_out:
        report.add(
            Finding(
                "warning",
                "fan_in_fan_out",
                f"shapes fit the base weight {fmt_shape(w)} only transposed: it is stored"
                " [in, out] (a GPT-2 style Conv1D), which PEFT handles as"
                " fan_in_fan_out=True although the config says false",
                module=mod.name,
                tensor=base_name,
            )
        )
    else:
        report.add(
            Finding(
                "error",
                "fan_in_fan_out",
                f"config says fan_in_fan_out=true but the base weight {fmt_shape(w)} is"
                " stored [out, in]: the delta would be applied transposed",
                module=mod.name,
                tensor=base_name,
            )
        )
    return True


_LAYOUTS = {
    "embedding": "[r, num_embeddings] / [embedding_dim, r]",
    "conv": "[r, in, k...] / [out, r, 1...]",
    "linear": "[r, in] / [out, r]",
}


def _check_factor_shapes(
    mod: LoraModule,
    adapter: AdapterDescription,
    w: Shape,
    base_name: str,
    exp: Expectation,
    report: CompatibilityReport,
) -> None:
    """lora_A, lora_B, DoRA's magnitude and lora_B's bias against what the weight implies."""
    exp_a, exp_b, exp_mag, _ = exp
    layout = _LAYOUTS[mod.kind] + (" (fan_in_fan_out)" if mod.fan_in_fan_out else "")
    for which, found, expected in (("lora_A", mod.a_shape, exp_a), ("lora_B", mod.b_shape, exp_b)):
        if found != expected:
            report.add(
                Finding(
                    "error",
                    "shape_mismatch",
                    f"{which} is {fmt_shape(found)}, expected {fmt_shape(expected)} for base weight"
                    f" {base_name} {fmt_shape(w)} (layout {layout})",
                    module=mod.name,
                    tensor=base_name,
                    expected=expected,
                    found=found,
                )
            )
    if (
        mod.magnitude_shape is not None
        and exp_mag is not None
        and math.prod(mod.magnitude_shape) != math.prod(exp_mag)
    ):
        report.add(
            Finding(
                "error",
                "shape_mismatch",
                f"DoRA magnitude vector is {fmt_shape(mod.magnitude_shape)}, expected"
                f" {fmt_shape(exp_mag)} for base weight {base_name} {fmt_shape(w)}",
                module=mod.name,
                tensor=base_name,
                expected=exp_mag,
                found=mod.magnitude_shape,
            )
        )
    if mod.bias_key is not None:
        found_bias = (
            adapter.tensors[mod.bias_key].shape if mod.bias_key in adapter.tensors else None
        )
        if found_bias is not None and exp_mag is not None and found_bias != exp_mag:
            report.add(
                Finding(
                    "error",
                    "shape_mismatch",
                    f"lora_B.bias is {fmt_shape(found_bias)}, expected {fmt_shape(exp_mag)}",
                    module=mod.name,
                    tensor=mod.bias_key,
                    expected=exp_mag,
                    found=found_bias,
                )
            )


def _valid_regex(k: str) -> bool:
    try:
        re.compile(k)
    except re.error:
        return False
    return True
