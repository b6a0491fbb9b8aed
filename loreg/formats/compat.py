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

from collections.abc import Callable

from loreg.formats.base_lookup import BaseLookup, find_rewrite, layer_hint
from loreg.formats.lora_fit import check_lora
from loreg.formats.peft_config import (
    adalora_scale,
    lora_scale,
    module_matches,
    resolve_rank_alpha,
)
from loreg.formats.report import CompatibilityReport, Finding, fmt_shape
from loreg.formats.targets import Binding, bind_parameters, renamed_tensors
from loreg.formats.types import AdapterDescription, BaseManifest

_VOCAB_HINTS = ("embed", "wte", "shared", "word_embeddings", "lm_head", "embed_out", "output")


def _is_vocab_layer(name: str) -> bool:
    return any(h in name for h in _VOCAB_HINTS)


def _check_saved(
    adapter: AdapterDescription, base: BaseLookup, report: CompatibilityReport
) -> None:
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
                        " base" + layer_hint(base_name, base),
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
                    f"saved tensor {tname} is {fmt_shape(found)} but the base's {base_name} is"
                    f" {fmt_shape(w)}",
                    module=sm.name,
                    tensor=base_name,
                    expected=w,
                    found=found,
                )
            )


def _check_coverage(
    adapter: AdapterDescription, base: BaseLookup, report: CompatibilityReport
) -> None:
    """Base modules the config targets but the adapter has no weights for (a warning)."""
    targets = adapter.target_modules
    if not targets or targets == "all-linear" or adapter.config.get("layers_to_transform"):
        return
    have = {base.name(m.base_weight) for m in adapter.modules.values()}
    rewrite = base.rewrite
    missing = []
    for tname, (_, shape) in base.manifest.tensors.items():
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
        found.append(Finding("error", opt.code, opt.message, details={"field": opt.field}))
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
                    f"trainable tokens {tm.key} is {fmt_shape(tm.shape)} but the config lists"
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
    adapter: AdapterDescription, base: BaseLookup, report: CompatibilityReport
) -> None:
    """Trainable tokens: the layer exists, is 2-D, has the row width and the rows named."""

    def resolved(name: str) -> str:
        return base.manifest.aliases.get(name, name)

    lora_targets = {resolved(base.name(m.base_weight)) for m in adapter.modules.values()}
    for tm in adapter.token_modules.values():
        report.token_modules_checked += 1
        saved = adapter.saved_shape(tm.base_weight)
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
                    f"trainable tokens {tm.key} is {fmt_shape(tm.shape)}, the rows of {where}"
                    f" {fmt_shape(w)} are {w[1:] if len(w) == 2 else 'not rows'} wide",
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
        if where in base.manifest.aliases:
            report.add(
                Finding(
                    "note",
                    "tokens_on_tied_layer",
                    f"{where} is tied to {base.manifest.aliases[where]} (the checkpoint stores one"
                    " tensor): its trainable-token rows are written there, as PEFT's merge does",
                    module=tm.name,
                    tensor=base.manifest.aliases[where],
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
    lookup = BaseLookup(base, checkpoint_names(adapter, base))
    _note_renames(lookup, report)
    _check_names(adapter, lookup, report)
    _check_shapes(adapter, base, lookup, report)
    _check_leftovers(adapter, lookup, report)
    _check_which_base(base, expected_fingerprint, expected_structure_hash, report)
    return report


def _note_renames(lookup: BaseLookup, report: CompatibilityReport) -> None:
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


def _check_names(
    adapter: AdapterDescription, lookup: BaseLookup, report: CompatibilityReport
) -> None:
    """Every adapter module must exist in the base, or a renamed prefix explains it (then
    ``lookup`` learns the rewrite, so the shape checks that follow can name the tensors)."""
    saved = adapter.saved_tensors
    wanted = [
        m.base_weight
        for m in adapter.modules.values()
        if m.base_weight not in saved and m.kind != "parameter"
    ]
    wanted += [t for sm in adapter.saved_modules.values() for t in sm.shapes]
    wanted += [
        tm.base_weight for tm in adapter.token_modules.values() if tm.base_weight not in saved
    ]
    unresolved = [n for n in wanted if lookup.raw(n) is None]
    if not unresolved:
        return
    found = find_rewrite(unresolved, lookup)
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
        some_base = next(iter(lookup.manifest.tensors), "")
        report.add(
            Finding(
                "error",
                "no_module_matches",
                f"none of the adapter's {len(wanted)} module tensors exists in the base model"
                f" (adapter: {wanted[0]!r}; base: {some_base!r}): a different architecture"
                " or naming",
            )
        )


def _check_shapes(
    adapter: AdapterDescription,
    base: BaseManifest,
    lookup: BaseLookup,
    report: CompatibilityReport,
) -> None:
    """Shapes and ranks of every part: LoRA modules, parameter LoRA, saved modules, tokens."""
    for mod in adapter.modules.values():
        report.modules_checked += 1
        if mod.kind != "parameter":
            check_lora(mod, adapter, lookup, report)
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


def _check_leftovers(
    adapter: AdapterDescription, lookup: BaseLookup, report: CompatibilityReport
) -> None:
    """Nothing may be silently ignored, in the tensors or in the config."""
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


def _check_which_base(
    base: BaseManifest,
    expected_fingerprint: str | None,
    expected_structure_hash: str | None,
    report: CompatibilityReport,
) -> None:
    """The exact weights the adapter was trained on, or only the same architecture?"""
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
