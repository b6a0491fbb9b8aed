"""Does an adapter fit a base model? A report that reads like a diagnosis.

Works on an ``AdapterDescription`` and a ``BaseManifest`` (headers only), so the API can
answer at push time. Every LoRA module must map onto a base weight (after PEFT's
``base_model.model.`` prefix is removed), its A/B shapes must agree with that weight
(``[r, in]`` / ``[out, r]`` against ``[out, in]``; transposed for ``fan_in_fan_out`` /
GPT-2 ``Conv1D``; ``[r, vocab]`` / ``[dim, r]`` for embeddings), its rank with the config's
``r`` / ``rank_pattern``, and ``modules_to_save`` tensors must match the base's shapes except
that embedding / output layers may have grown along the vocabulary dimension. Nothing in the
adapter may be left unmapped: PEFT silently ignores keys it cannot place, which is how a
renamed prefix turns into base-model output.

The same rule covers the config: a field loreg does not apply (``loreg.formats.options``) is
an error, never skipped. ``adapter_findings`` holds the checks that need no base (export and
combine run them); ``check_compatibility`` runs them too, so validate, push and merge refuse
exactly the same adapters. LoRA on parameters (``target_parameters``) is bound to the base's
parameters by ``loreg.formats.targets``; trainable tokens must name rows the base has.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from loreg.formats.peft import (
    adalora_scale,
    lora_scale,
    module_matches,
    resolve_rank_alpha,
)
from loreg.formats.targets import Binding, bind_parameters, renamed_tensors
from loreg.formats.types import AdapterDescription, BaseManifest, LoraModule

Severity = Literal["error", "warning", "note"]
Shape = tuple[int, ...]

_VOCAB_HINTS = ("embed", "wte", "shared", "word_embeddings", "lm_head", "embed_out", "output")
_LAYER_INDEX = re.compile(r"^(?P<prefix>.*?\.)(?P<index>\d+)\.")
_MAX_FORMAT_PER_CODE = 20


@dataclass(frozen=True)
class Finding:
    """One problem, warning or note; ``module`` is the adapter's module (base naming)."""

    severity: Severity
    code: str
    message: str
    module: str | None = None
    tensor: str | None = None
    expected: Shape | None = None
    found: Shape | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "module": self.module,
            "tensor": self.tensor,
            "expected": list(self.expected) if self.expected is not None else None,
            "found": list(self.found) if self.found is not None else None,
            "message": self.message,
            "details": self.details,
        }


MatchKind = Literal["exact", "structural", "unverified", "different"]


@dataclass
class CompatibilityReport:
    """Everything wrong (``problems``), doubtful (``warnings``) or worth knowing (``notes``)."""

    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    match: MatchKind = "unverified"
    modules_checked: int = 0
    saved_modules_checked: int = 0
    token_modules_checked: int = 0
    base_fingerprint: str | None = None
    base_structure_hash: str | None = None
    expected_fingerprint: str | None = None
    prefix_rewrite: tuple[str, str] | None = None  # (adapter prefix, base prefix) detected
    match_hint: str | None = None  # what would make the match ``exact``, when it is not

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, finding: Finding) -> None:
        {"error": self.problems, "warning": self.warnings, "note": self.notes}[
            finding.severity
        ].append(finding)

    def to_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready; stored with the version and returned in 422 errors.

        With ``limit``, each list keeps its first ``limit`` findings; ``*_total`` always
        count them all, so a report's size is bounded whatever the adapter.
        """

        def first(items: list[Finding]) -> list[dict[str, Any]]:
            return [f.to_dict() for f in (items if limit is None else items[:limit])]

        return {
            "compatible": self.ok,
            "match": self.match,
            "modules_checked": self.modules_checked,
            "saved_modules_checked": self.saved_modules_checked,
            "token_modules_checked": self.token_modules_checked,
            "base_fingerprint": self.base_fingerprint,
            "base_structure_hash": self.base_structure_hash,
            "expected_fingerprint": self.expected_fingerprint,
            "prefix_rewrite": list(self.prefix_rewrite) if self.prefix_rewrite else None,
            "match_hint": self.match_hint,
            "problems": first(self.problems),
            "warnings": first(self.warnings),
            "notes": first(self.notes),
            "problems_total": len(self.problems),
            "warnings_total": len(self.warnings),
            "notes_total": len(self.notes),
        }

    def format(self) -> str:
        """Human text for a terminal or a CI log: a verdict line, then one line per finding."""
        verdict = "COMPATIBLE" if self.ok else "INCOMPATIBLE"
        counts = (
            f"{len(self.problems)} problem(s), {len(self.warnings)} warning(s),"
            f" {self.modules_checked} LoRA module(s) and {self.saved_modules_checked} saved"
            f" module(s) checked"
            + (
                f", {self.token_modules_checked} trainable-token layer(s)"
                if self.token_modules_checked
                else ""
            )
            + f", base match: {self.match}"
        )
        lines = [f"{verdict}: {counts}"]
        if self.match_hint:
            lines.append(f"  base match {self.match}: {self.match_hint}")
        for label, items in (
            ("error", self.problems),
            ("warning", self.warnings),
            ("note", self.notes),
        ):
            shown: dict[str, int] = {}
            hidden: dict[str, int] = {}
            for f in items:
                if shown.get(f.code, 0) >= _MAX_FORMAT_PER_CODE:
                    hidden[f.code] = hidden.get(f.code, 0) + 1
                    continue
                shown[f.code] = shown.get(f.code, 0) + 1
                where = f"{f.module}: " if f.module else ""
                lines.append(f"  {label}[{f.code}] {where}{f.message}")
            for code, n in hidden.items():
                lines.append(f"  {label}[{code}] ... and {n} more like this (see --json)")
        return "\n".join(lines)


def _fmt(shape: Shape | None) -> str:
    return "none" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _is_vocab_layer(name: str) -> bool:
    return any(h in name for h in _VOCAB_HINTS)


class _Base:
    """Base tensor lookup with tied-weight aliases, the checkpoint's renamings (transformers'
    conversion rules) and an optional prefix rewrite."""

    def __init__(self, manifest: BaseManifest, renames: dict[str, str] | None = None) -> None:
        self.m = manifest
        self.rewrite: tuple[str, str] | None = None
        self.renames = renames or {}

    def raw(self, name: str) -> Shape | None:
        name = self.renames.get(name, name)
        if name in self.m.tensors:
            return self.m.tensors[name][1]
        alias = self.m.aliases.get(name)
        if alias is not None and alias in self.m.tensors:
            return self.m.tensors[alias][1]
        return None

    def name(self, name: str) -> str:
        if name in self.renames:
            return self.renames[name]
        if self.rewrite and name.startswith(self.rewrite[0]):
            return self.rewrite[1] + name[len(self.rewrite[0]) :]
        return name

    def shape(self, name: str) -> Shape | None:
        return self.raw(self.name(name))


def _has_digit_part(prefix: str) -> bool:
    return any(p.isdigit() for p in prefix.split(".") if p)


def _find_rewrite(names: list[str], base: _Base) -> tuple[tuple[str, str], int] | None:
    """The (adapter prefix -> base prefix) rewrite that maps most unresolved names, if any."""
    if not names:
        return None
    base_names = list(base.m.tensors) + list(base.m.aliases)
    candidates: set[tuple[str, str]] = set()
    for n in names[:8]:
        parts = n.split(".")
        for i in range(0, len(parts) - 1):
            p = ".".join(parts[:i]) + ("." if i else "")
            if _has_digit_part(p):
                break
            s = n[len(p) :]
            for b in base_names:
                if b == s or b.endswith("." + s):
                    q = b[: len(b) - len(s)]
                    if q != p and not _has_digit_part(q):
                        candidates.add((p, q))
    best: tuple[tuple[str, str], int] | None = None
    for p, q in sorted(candidates):
        score = sum(1 for n in names if n.startswith(p) and base.raw(q + n[len(p) :]) is not None)
        if score and (best is None or score > best[1]):
            best = ((p, q), score)
    return best


def _layer_hint(name: str, base: _Base) -> str:
    """'the base has layers 0..1 only' when the name's layer index is beyond the base's."""
    m = _LAYER_INDEX.match(name)
    if not m:
        return ""
    prefix = m["prefix"]
    indices = set()
    for b in base.m.tensors:
        if b.startswith(prefix):
            head = b[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    if indices and int(m["index"]) not in indices:
        return (
            f" (the base has {len(indices)} layer(s) under '{prefix}', indices"
            f" {min(indices)}..{max(indices)}; the adapter was trained on a deeper model)"
        )
    return ""


def _lora_expectations(
    mod: LoraModule, w: Shape, r: int
) -> tuple[Shape, Shape, Shape | None, bool] | str:
    """Expected (A, B, magnitude, transposed) shapes for a module on weight ``w``, or why not."""
    if mod.kind == "embedding":
        if len(w) != 2:
            return f"base weight is {_fmt(w)}, not a 2-D embedding"
        return (r, w[0]), (w[1], r), (w[1],), False
    if mod.kind == "conv":
        if len(w) < 3:
            return f"base weight is {_fmt(w)}, not a convolution kernel"
        ones = (1,) * (len(w) - 2)
        return (r, *w[1:]), (w[0], r, *ones), (w[0],), False
    if len(w) != 2:
        return f"base weight is {_fmt(w)}, not a 2-D linear weight"
    if mod.fan_in_fan_out:
        return (r, w[0]), (w[1], r), (w[1],), True
    return (r, w[1]), (w[0], r), (w[0],), False


def _check_lora(
    mod: LoraModule, adapter: AdapterDescription, base: _Base, report: CompatibilityReport
) -> None:
    base_name = base.name(mod.base_weight)
    saved = next(
        (
            sm.shapes[mod.base_weight]
            for sm in adapter.saved_modules.values()
            if mod.base_weight in sm.shapes
        ),
        None,
    )
    w = saved if saved is not None else base.shape(mod.base_weight)
    if w is None:
        report.add(
            Finding(
                "error",
                "missing_base_module",
                f"no base tensor {base_name!r} for this LoRA module" + _layer_hint(base_name, base),
                module=mod.name,
                tensor=base_name,
            )
        )
        return
    # Rank as the tensors have it, checked against the config (with its patterns).
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
                f"config ({src}) says r={mod.r} but lora_A is {_fmt(mod.a_shape)} and lora_B is"
                f" {_fmt(mod.b_shape)}",
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
                    f"AdaLoRA lora_E is {_fmt(e_shape)}, expected [{a_rank}, 1]",
                    module=mod.name,
                    tensor=mod.e_key,
                )
            )
    r = a_rank if a_rank is not None else mod.r
    exp = _lora_expectations(mod, w, r)
    if isinstance(exp, str):
        report.add(
            Finding("error", "shape_mismatch", exp, module=mod.name, tensor=base_name, found=w)
        )
        return
    exp_a, exp_b, exp_mag, _ = exp
    if mod.kind == "linear" and (mod.a_shape, mod.b_shape) != (exp_a, exp_b):
        flipped = _lora_expectations(
            LoraModule(**{**mod.__dict__, "fan_in_fan_out": not mod.fan_in_fan_out}), w, r
        )
        if not isinstance(flipped, str) and (mod.a_shape, mod.b_shape) == flipped[:2]:
            if not mod.fan_in_fan_out:
                report.add(
                    Finding(
                        "warning",
                        "fan_in_fan_out",
                        f"shapes fit the base weight {_fmt(w)} only transposed: it is stored"
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
                        f"config says fan_in_fan_out=true but the base weight {_fmt(w)} is"
                        " stored [out, in]: the delta would be applied transposed",
                        module=mod.name,
                        tensor=base_name,
                    )
                )
            return
    layout = {
        "embedding": "[r, num_embeddings] / [embedding_dim, r]",
        "conv": "[r, in, k...] / [out, r, 1...]",
        "linear": "[r, in] / [out, r]" + (" (fan_in_fan_out)" if mod.fan_in_fan_out else ""),
    }[mod.kind]
    for which, found, expected in (("lora_A", mod.a_shape, exp_a), ("lora_B", mod.b_shape, exp_b)):
        if found != expected:
            report.add(
                Finding(
                    "error",
                    "shape_mismatch",
                    f"{which} is {_fmt(found)}, expected {_fmt(expected)} for base weight"
                    f" {base_name} {_fmt(w)} (layout {layout})",
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
                f"DoRA magnitude vector is {_fmt(mod.magnitude_shape)}, expected"
                f" {_fmt(exp_mag)} for base weight {base_name} {_fmt(w)}",
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
                    f"lora_B.bias is {_fmt(found_bias)}, expected {_fmt(exp_mag)}",
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


def _check_saved(adapter: AdapterDescription, base: _Base, report: CompatibilityReport) -> None:
    for sm in adapter.saved_modules.values():
        report.saved_modules_checked += 1
        for tname, found in sm.shapes.items():
            base_name = base.name(tname)
            w = base.shape(tname)
            if w is None:
                report.add(
                    Finding(
                        "error",
                        "missing_base_module",
                        f"saved module tensor {tname!r} has no counterpart {base_name!r} in the"
                        " base" + _layer_hint(base_name, base),
                        module=sm.name,
                        tensor=base_name,
                        found=found,
                    )
                )
                continue
            if found == w:
                continue
            grown = (
                len(found) == len(w)
                and len(w) >= 1
                and found[1:] == w[1:]
                and found[0] > w[0]
                and _is_vocab_layer(tname)
            )
            if grown:
                report.add(
                    Finding(
                        "note",
                        "vocabulary_grown",
                        f"{tname} has {found[0]} rows where the base has {w[0]}: tokens were"
                        f" added during fine-tuning and PEFT saved the whole layer"
                        f" ({sm.origin}); it replaces the base's",
                        module=sm.name,
                        tensor=base_name,
                        expected=w,
                        found=found,
                    )
                )
                continue
            report.add(
                Finding(
                    "error",
                    "shape_mismatch",
                    f"saved tensor {tname} is {_fmt(found)} but the base's {base_name} is"
                    f" {_fmt(w)}",
                    module=sm.name,
                    tensor=base_name,
                    expected=w,
                    found=found,
                )
            )


def _check_coverage(adapter: AdapterDescription, base: _Base, report: CompatibilityReport) -> None:
    """Base modules the config targets but the adapter has no weights for (a warning)."""
    targets = adapter.target_modules
    if not targets or targets == "all-linear" or adapter.config.get("layers_to_transform"):
        return
    have = {base.name(m.base_weight) for m in adapter.modules.values()}
    rewrite = base.rewrite
    missing = []
    for tname, (_, shape) in base.m.tensors.items():
        if not tname.endswith(".weight") or tname in have or len(shape) < 2:
            continue
        module = tname[: -len(".weight")]
        adapter_module = module
        if rewrite and module.startswith(rewrite[1]):
            adapter_module = rewrite[0] + module[len(rewrite[1]) :]
        if module_matches(targets, adapter_module):
            missing.append(module)
    if missing:
        report.add(
            Finding(
                "warning",
                "target_not_adapted",
                f"{len(missing)} base module(s) match target_modules but have no LoRA weights,"
                f" e.g. {', '.join(missing[:3])} (a base with more layers than the adapter's?)",
                details={"modules": missing},
            )
        )


def adapter_findings(adapter: AdapterDescription) -> list[Finding]:
    """Problems visible in the adapter alone: tensors and config fields loreg does not apply.

    Every path runs these (merge, export and combine too, not only validate and push): an
    adapter is never merged, exported or combined without a part of it.
    """
    found: list[Finding] = []
    for opt in adapter.option_findings:
        found.append(
            Finding("error", opt.code, opt.message, details={"field": opt.field})
        )
    for key in adapter.unmapped_keys:
        found.append(
            Finding(
                "error",
                "unmapped_tensor",
                f"adapter tensor {key!r} is none of the tensors loreg applies (LoRA A/B and"
                " bias, DoRA magnitude, AdaLoRA E, trainable-token rows, modules_to_save or"
                " base-layer copies, trained biases): loreg refuses the adapter rather than"
                " merge it without this tensor. Remove it if it is junk, or merge with PEFT if"
                " PEFT applies it",
                tensor=key,
                found=adapter.tensors[key].shape if key in adapter.tensors else None,
            )
        )
    for tm in adapter.token_modules.values():
        if len(tm.shape) != 2 or tm.shape[0] != len(tm.indices):
            found.append(
                Finding(
                    "error",
                    "shape_mismatch",
                    f"trainable tokens {tm.key} is {_fmt(tm.shape)} but the config lists"
                    f" {len(tm.indices)} token id(s) for it: one row per id expected",
                    module=tm.name,
                    tensor=tm.key,
                    found=tm.shape,
                )
            )
    return found


def _rank_alpha(adapter: AdapterDescription) -> Callable[[str], tuple[int, float, float]]:
    def resolve(name: str) -> tuple[int, float, float]:
        if adapter.peft_type == "ADALORA":
            return adapter.r, adapter.lora_alpha, adalora_scale(adapter.config, adapter.r)
        r, alpha = resolve_rank_alpha(adapter.config, name)
        return r, alpha, lora_scale(r, alpha, adapter.use_rslora)

    return resolve


def checkpoint_names(adapter: AdapterDescription, base: BaseManifest) -> dict[str, str]:
    """The base tensors the adapter names that the checkpoint stores under another name,
    by transformers' conversion rules for the base's model type: {model name: stored name}."""
    names = [m.base_weight for m in adapter.modules.values() if m.kind != "parameter"]
    names += [m.base_bias for m in adapter.modules.values() if m.bias_key is not None]
    names += [t for sm in adapter.saved_modules.values() for t in sm.shapes]
    names += [tm.base_weight for tm in adapter.token_modules.values()]
    return renamed_tensors(base, names)


def bind(adapter: AdapterDescription, base: BaseManifest) -> Binding:
    """The adapter's parameter LoRA modules bound to the base's parameters (see targets)."""
    return bind_parameters(adapter, base, _rank_alpha(adapter))


def _check_tokens(
    adapter: AdapterDescription, base: _Base, report: CompatibilityReport
) -> None:
    """Trainable tokens: the layer exists, is 2-D, has the row width and the rows named."""
    def resolved(name: str) -> str:
        return base.m.aliases.get(name, name)

    lora_targets = {resolved(base.name(m.base_weight)) for m in adapter.modules.values()}
    for tm in adapter.token_modules.values():
        report.token_modules_checked += 1
        saved = next(
            (
                sm.shapes[tm.base_weight]
                for sm in adapter.saved_modules.values()
                if tm.base_weight in sm.shapes
            ),
            None,
        )
        w = saved if saved is not None else base.shape(tm.base_weight)
        where = base.name(tm.base_weight)
        if w is None:
            report.add(
                Finding(
                    "error",
                    "missing_base_module",
                    f"no base tensor {where!r} for the trainable tokens of this layer",
                    module=tm.name,
                    tensor=where,
                )
            )
            continue
        if len(w) != 2 or len(tm.shape) != 2 or tm.shape[1] != w[1]:
            report.add(
                Finding(
                    "error",
                    "shape_mismatch",
                    f"trainable tokens {tm.key} is {_fmt(tm.shape)}, the rows of {where}"
                    f" {_fmt(w)} are {w[1:] if len(w) == 2 else 'not rows'} wide",
                    module=tm.name,
                    tensor=where,
                    expected=(len(tm.indices), w[1]) if len(w) == 2 else None,
                    found=tm.shape,
                )
            )
            continue
        beyond = [i for i in tm.indices if i >= w[0]]
        if beyond:
            report.add(
                Finding(
                    "error",
                    "token_out_of_range",
                    f"trainable token id(s) {beyond[:5]} are beyond {where}'s {w[0]} rows",
                    module=tm.name,
                    tensor=where,
                )
            )
        if resolved(where) in lora_targets:
            report.add(
                Finding(
                    "error",
                    "tokens_and_lora",
                    f"{where} has both trainable tokens and LoRA; PEFT does not build such an"
                    " adapter and loreg does not know in which order to apply them",
                    module=tm.name,
                    tensor=where,
                )
            )
        if where in base.m.aliases:
            report.add(
                Finding(
                    "note",
                    "tokens_on_tied_layer",
                    f"{where} is tied to {base.m.aliases[where]} (the checkpoint stores one"
                    " tensor): its trainable-token rows are written there, as PEFT's merge does",
                    module=tm.name,
                    tensor=base.m.aliases[where],
                )
            )


def check_compatibility(
    adapter: AdapterDescription,
    base: BaseManifest,
    *,
    expected_fingerprint: str | None = None,
    expected_structure_hash: str | None = None,
) -> CompatibilityReport:
    """Check ``adapter`` against ``base``; ``expected_*`` are what the adapter was trained on.

    ``match`` is ``exact`` when the base's fingerprint equals ``expected_fingerprint``,
    ``structural`` when it differs (a warning: same architecture, other weights),
    ``different`` when ``expected_structure_hash`` differs, else ``unverified``.
    """
    report = CompatibilityReport(
        base_fingerprint=base.fingerprint,
        base_structure_hash=base.structure_hash,
        expected_fingerprint=expected_fingerprint,
    )
    lookup = _Base(base, checkpoint_names(adapter, base))
    for model_name, stored in sorted(lookup.renames.items()):
        report.add(
            Finding(
                "note",
                "renamed_in_checkpoint",
                f"{model_name} is stored as {stored} in this checkpoint (the model type's"
                " conversion rules); the delta is applied there",
                tensor=stored,
            )
        )

    # 1. Names: every adapter module must exist in the base, or a renamed prefix explains it.
    wanted = [
        m.base_weight
        for m in adapter.modules.values()
        if m.base_weight not in _saved_names(adapter) and m.kind != "parameter"
    ]
    wanted += [t for sm in adapter.saved_modules.values() for t in sm.shapes]
    wanted += [
        tm.base_weight
        for tm in adapter.token_modules.values()
        if tm.base_weight not in _saved_names(adapter)
    ]
    unresolved = [n for n in wanted if lookup.raw(n) is None]
    if unresolved:
        found = _find_rewrite(unresolved, lookup)
        if found is not None:
            (p, q), score = found
            lookup.rewrite = (p, q)
            report.prefix_rewrite = (p, q)
            example = next(n for n in unresolved if n.startswith(p))
            report.add(
                Finding(
                    "error",
                    "renamed_prefix",
                    f"the adapter names its modules '{p or '<no prefix>'}...' but the base model's"
                    f" tensors are named '{q or '<no prefix>'}...' ({score} of {len(wanted)}"
                    f" module tensors, e.g. {example!r} is {q + example[len(p) :]!r} in the base)."
                    " PEFT would load none of these weights and silently serve base-model output;"
                    " the adapter was trained on a differently wrapped or renamed model",
                    module=example.rsplit(".", 1)[0],
                    tensor=q + example[len(p) :],
                    details={"adapter_prefix": p, "base_prefix": q, "modules": score},
                )
            )
        if all(lookup.shape(n) is None for n in wanted) and wanted:
            some_base = next(iter(base.tensors), "")
            report.add(
                Finding(
                    "error",
                    "no_module_matches",
                    f"none of the adapter's {len(wanted)} module tensors exists in the base model"
                    f" (adapter: {wanted[0]!r}; base: {some_base!r}): a different architecture"
                    " or naming",
                )
            )

    # 2. Shapes and ranks.
    for mod in adapter.modules.values():
        report.modules_checked += 1
        if mod.kind != "parameter":
            _check_lora(mod, adapter, lookup, report)
    binding = bind(adapter, base)
    for code, module, message in binding.problems:
        report.add(Finding("error", code, message, module=module))
    for bp in binding.bound:
        if bp.stored.rule_set is not None and bp.stored.pieces[0].expert is not None:
            report.add(
                Finding(
                    "note",
                    "experts_stored_per_expert",
                    f"{bp.parameter} ({bp.num_experts} experts) is stored as"
                    f" {len(bp.stored.pieces)} per-expert tensors, e.g."
                    f" {bp.stored.pieces[0].tensor}; the delta is split onto them",
                    module=bp.module.name,
                    tensor=bp.parameter,
                )
            )
    _check_saved(adapter, lookup, report)
    _check_tokens(adapter, lookup, report)

    # 3. Leftovers: nothing may be silently ignored, in the tensors or in the config.
    for finding in adapter_findings(adapter):
        report.add(finding)
    if adapter.ignored_keys:
        report.add(
            Finding(
                "note",
                "original_module_copies",
                f"{len(adapter.ignored_keys)} 'original_module' tensor(s) are copies of base"
                " weights that PEFT saved alongside modules_to_save; they change nothing",
                details={"keys": list(adapter.ignored_keys)},
            )
        )
    if not adapter.modules and not adapter.saved_modules and not adapter.token_modules:
        report.add(Finding("error", "empty_adapter", "the adapter has no LoRA weights at all"))
    _check_coverage(adapter, lookup, report)
    for sm in adapter.saved_modules.values():
        if sm.origin == "base_layer":
            report.add(
                Finding(
                    "note",
                    "base_layer_saved",
                    "PEFT saved this layer's base weights with the adapter (embedding / lm_head"
                    " targets); they replace the base's when merged",
                    module=sm.name,
                )
            )

    # 4. Which base: the exact weights, or only the same architecture?
    if expected_structure_hash and expected_structure_hash != base.structure_hash:
        report.match = "different"
        report.add(
            Finding(
                "warning",
                "structure_differs",
                f"the base's structure hash {base.structure_hash} differs from the one the"
                f" adapter was registered with ({expected_structure_hash})",
            )
        )
    elif expected_fingerprint:
        if base.fingerprint is None:
            report.add(
                Finding(
                    "note",
                    "fingerprint_not_computed",
                    "the base's fingerprint was not computed: structure checked only",
                )
            )
        elif base.fingerprint == expected_fingerprint:
            report.match = "exact"
        else:
            report.match = "structural"
            report.add(
                Finding(
                    "warning",
                    "structural_match_only",
                    f"same architecture but other weights: the base's fingerprint is"
                    f" {base.fingerprint}, the adapter was trained on {expected_fingerprint}"
                    " (a fine-tuned or re-quantised variant?); outputs may differ from training",
                )
            )
    elif expected_structure_hash:
        report.match = "structural"
    return report


def _saved_names(adapter: AdapterDescription) -> set[str]:
    return {t for sm in adapter.saved_modules.values() for t in sm.shapes}
