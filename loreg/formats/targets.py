"""LoRA on parameters (PEFT's ``target_parameters``): which checkpoint tensors it changes.

PEFT adapts a mixture of experts' fused 3-D parameters (transformers 5's
``mlp.experts.gate_up_proj`` ``[experts, 2 * intermediate, hidden]``) with one ``ParamWrapper``
per parameter, nested when two parameters of one module are targeted: the outer wrapper's
tensors are ``<module>.lora_A.weight``, the one inside it ``<module>.base_layer.lora_A.weight``.
``lora_A`` is ``[r * experts, in]`` with expert ``e``'s rows at ``e*r .. e*r+r-1``; ``lora_B``
is ``[out, r * experts]`` with expert ``e``'s columns at ``e, e+E, e+2E, ...`` (PEFT reshapes
it to ``[out, r, E]``). Expert ``e``'s delta is ``scale * B_e @ A_e``, laid out
``[out, in]`` when the parameter is stored ``[E, out, in]`` and transposed when it is stored
``[E, in, out]`` (``is_transposed`` experts such as gpt-oss'); which one follows from the
shapes. A square parameter fits both: a checkpoint that stores it per expert settles it
(stacked ``nn.Linear`` weights are ``[out, in]``), and so does another parameter of the same
module (transformers lays out all of a module's experts one way); otherwise it is refused.

Which wrapper adapts which parameter is not in the adapter (PEFT nests them in the order the
module registered its parameters): each wrapper is matched to the one parameter its shapes
fit, and a tie is refused.

A checkpoint may store the fused parameter as it is (gpt-oss, Llama 4) or per expert, under
other names (Qwen3-MoE: ``mlp.experts.0.gate_proj.weight``...; Mixtral:
``block_sparse_moe.experts.0.w1.weight``...). transformers converts those when it loads them;
``checkpoint_rules.json`` holds its renamings and expert-stacking rules for every model type
(generated from transformers by ``scripts/checkpoint_rules.py``), and ``stored_parameters``
applies them to the checkpoint's tensor names the way transformers does: every renaming,
then at most one converter; ``stack`` stacks experts along a new first dimension,
``stack_concat`` then concatenates the converter's sources along dimension 1.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loreg.formats.types import AdapterDescription, BaseManifest, LoraModule

RULES_FILE = Path(__file__).with_name("checkpoint_rules.json")
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Piece:
    """One checkpoint tensor that holds part of a fused parameter.

    ``expert`` is None when the tensor is the whole parameter; else the tensor is
    ``param[expert, rows[0]:rows[1], ...]``.
    """

    tensor: str
    expert: int | None
    rows: tuple[int, int] | None


@dataclass(frozen=True)
class StoredParameter:
    """A model parameter as the checkpoint stores it: its shape and the tensors holding it."""

    name: str
    shape: Shape
    pieces: tuple[Piece, ...]
    rule_set: str | None = None  # the conversion rules that found it (None: stored as is)


@dataclass(frozen=True)
class BoundParameter:
    """A parameter LoRA module bound to the parameter it adapts.

    ``module`` has rank, alpha and scale resolved for that parameter and ``num_experts``
    set. ``swapped``: the parameter is stored ``[E, out, in]`` (PEFT swaps in/out for it),
    so expert ``e``'s delta is ``B_e @ A_e``; otherwise ``(B_e @ A_e).T``. For a 2-D
    parameter (``[out, in]``) the delta is ``B @ A``.
    """

    module: LoraModule
    parameter: str
    stored: StoredParameter
    swapped: bool

    @property
    def num_experts(self) -> int:
        return self.module.num_experts


@dataclass
class Binding:
    """The result of binding an adapter's parameter modules to a base."""

    bound: list[BoundParameter] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (code, module, message)


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class _Transform:
    sources: tuple[str, ...]
    target: str
    ops: str | None  # converters: "stack" / "stack_concat" / None (not reproduced)

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        """transformers' ``compiled_sources``: branches longest first, ``*.`` any path,
        a pattern ending in a name character ends on a name boundary."""
        branches = []
        for i, src in sorted(enumerate(self.sources), key=lambda item: -len(item[1])):
            pattern = src.replace("*.", r".*\.")
            if re.search(r"[a-zA-Z0-9]$", pattern):
                pattern += r"(?!\w)"
            branches.append(f"(?P<g{i}>{pattern})")
        return re.compile("|".join(branches))

    def apply(self, key: str) -> tuple[str, int] | None:
        """(renamed key, index of the source pattern that matched), as transformers renames."""
        m = self.regex.search(key)
        if m is None:
            return None
        group = next(name for name, value in m.groupdict().items() if value is not None)
        replacement = self.target
        if r"\1" in replacement:
            replacement = replacement.replace(r"\1", m.group(self.regex.groupindex[group] + 1))
        return key.replace(m.group(0), replacement, 1), int(group[1:])

    def expert_index(self, key: str, source: int) -> int | None:
        """The expert number the source pattern's ``*`` stands for in ``key``."""
        pattern = self.sources[source].replace("*.", r"(\d+)\.", 1)
        m = re.search(pattern, key)
        return int(m.group(1)) if m and m.groups() else None


@dataclass(frozen=True)
class _RuleSet:
    name: str
    renames: tuple[_Transform, ...]
    converters: tuple[_Transform, ...]


@functools.cache
def _rules() -> tuple[dict[str, str], dict[str, _RuleSet]]:
    doc = json.loads(RULES_FILE.read_text(encoding="utf-8"))

    def transforms(entries: Iterable[Mapping[str, Any]]) -> tuple[_Transform, ...]:
        return tuple(
            _Transform(tuple(e["sources"]), e["targets"][0], e.get("ops")) for e in entries
        )

    legacy = transforms(doc.get("legacy_renames") or [])
    sets = {
        name: _RuleSet(name, transforms(body["renames"]) + legacy, transforms(body["converters"]))
        for name, body in doc["rule_sets"].items()
    }
    return dict(doc["model_types"]), sets


def rule_set_for(model_type: str | None) -> str | None:
    """The name of the conversion rules transformers applies to ``model_type``'s checkpoints."""
    if not model_type:
        return None
    return _rules()[0].get(model_type)


def _index(rule_set: _RuleSet, manifest: BaseManifest, names: Sequence[str]) -> dict[str, Any]:
    """Model parameter name -> stored pieces, for the checkpoint tensors these rules convert.

    Only tensors that share a path component with a wanted parameter's module are looked at
    (``experts``), which keeps this linear in the checkpoint's size with a small constant.
    """
    hints = {n.rsplit(".", 2)[-2] for n in names if n.count(".") >= 2}
    parts: dict[str, dict[tuple[int, int], str]] = {}
    ops: dict[str, str] = {}
    whole: dict[str, str] = {}
    for tname in manifest.tensors:
        if hints and not any(f".{h}." in f".{tname}." for h in hints):
            continue
        key = tname
        for t in rule_set.renames:
            applied = t.apply(key)
            if applied is not None:
                key = applied[0]
        for c in rule_set.converters:
            applied = c.apply(key)
            if applied is None:
                continue
            if c.ops is not None:
                expert = c.expert_index(key, applied[1])
                if expert is not None:
                    parts.setdefault(applied[0], {})[(expert, applied[1])] = tname
                    ops[applied[0]] = c.ops
            key = ""  # converted by a rule loreg does not reproduce, or not an expert: skip
            break
        if key and key != tname:
            whole[key] = tname
    return {"parts": parts, "whole": whole, "ops": ops}


def _assemble(
    name: str, found: dict[tuple[int, int], str], manifest: BaseManifest, concat: bool
) -> StoredParameter | str:
    """The fused parameter from its per-expert pieces, or why the pieces do not fit."""
    experts = sorted({e for e, _ in found})
    sources = sorted({s for _, s in found})
    if experts != list(range(len(experts))) or len(found) != len(experts) * len(sources):
        return f"the checkpoint's experts for {name} are incomplete ({len(found)} tensors)"
    if not concat and len(sources) != 1:
        return f"several tensors per expert for {name} without a concatenation rule"
    shapes = {key: manifest.tensors[t][1] for key, t in found.items()}
    dtypes = {manifest.tensors[t][0] for t in found.values()}
    first = [shapes[(0, s)] for s in sources]
    if len(dtypes) != 1 or any(len(s) != 2 for s in first):
        return f"the checkpoint's expert tensors for {name} are not 2-D tensors of one dtype"
    if any(shapes[(e, s)] != shapes[(0, s)] for e, s in found):
        return f"the checkpoint's expert tensors for {name} differ in shape between experts"
    cols = {s[1] for s in first}
    if len(cols) != 1:
        return f"the checkpoint's tensors for {name} cannot be concatenated (columns {cols})"
    pieces = []
    offsets = list(itertools.accumulate([s[0] for s in first], initial=0))
    for e in experts:
        for k, s in enumerate(sources):
            pieces.append(Piece(found[(e, s)], e, (offsets[k], offsets[k + 1])))
    return StoredParameter(name, (len(experts), offsets[-1], cols.pop()), tuple(pieces))


def stored_parameters(
    manifest: BaseManifest, names: Sequence[str]
) -> tuple[dict[str, StoredParameter], dict[str, str]]:
    """Find each model parameter of ``names`` in the checkpoint: ({name: stored}, {name: why not}).

    A parameter stored under its own name is taken as it is. Otherwise the conversion rules
    of the base's model type are applied (of every model type when the base's config.json
    is not known); when rules of several model types find a parameter differently, it is
    refused as ambiguous.
    """
    found: dict[str, StoredParameter] = {}
    missing: dict[str, str] = {}
    wanted = []
    for n in names:
        if n in manifest.tensors:
            found[n] = StoredParameter(n, manifest.tensors[n][1], (Piece(n, None, None),))
        else:
            wanted.append(n)
    if not wanted:
        return found, missing
    model_types, sets = _rules()
    own = model_types.get(manifest.model_type or "")
    candidates = [sets[own]] if own else list(sets.values())
    results: dict[str, dict[str, StoredParameter | str]] = {n: {} for n in wanted}
    for rule_set in candidates:
        index = _index(rule_set, manifest, wanted)
        for n in wanted:
            if n in index["whole"]:
                t = index["whole"][n]
                results[n][rule_set.name] = StoredParameter(
                    n, manifest.tensors[t][1], (Piece(t, None, None),), rule_set.name
                )
            elif n in index["parts"]:
                is_concat = index["ops"][n] == "stack_concat"
                got = _assemble(n, index["parts"][n], manifest, is_concat)
                results[n][rule_set.name] = (
                    replace(got, rule_set=rule_set.name)
                    if isinstance(got, StoredParameter)
                    else got
                )
    for n in wanted:
        options = results[n]
        good = {k: v for k, v in options.items() if isinstance(v, StoredParameter)}
        distinct = {(v.shape, v.pieces) for v in good.values()}
        if len(distinct) == 1:
            found[n] = next(iter(good.values()))
        elif len(distinct) > 1:
            missing[n] = (
                f"the checkpoint rules of several model types ({', '.join(sorted(good))}) map"
                f" {n} onto different tensors; register the base with its config.json so its"
                " model_type picks one"
            )
        elif options:
            missing[n] = "; ".join(str(v) for v in options.values())
        else:
            where = f"model type {manifest.model_type!r}" if own else "any known model type"
            missing[n] = (
                f"no base tensor {n!r}, and the checkpoint conversion rules of {where} do not"
                " build it from the checkpoint's tensors"
            )
    return found, missing


def renamed_tensors(manifest: BaseManifest, names: Sequence[str]) -> dict[str, str]:
    """Model tensor names the checkpoint stores under another name (transformers' renamings,
    e.g. Mixtral's ``mlp.gate.weight`` stored as ``block_sparse_moe.gate.weight``)."""
    wanted = [n for n in names if n not in manifest.tensors and n not in manifest.aliases]
    if not wanted:
        return {}
    found, _ = stored_parameters(manifest, wanted)
    return {
        n: sp.pieces[0].tensor
        for n, sp in found.items()
        if len(sp.pieces) == 1 and sp.pieces[0].expert is None and sp.pieces[0].tensor != n
    }


# --------------------------------------------------------------------------- binding


def _fits(module: LoraModule, shape: Shape, r: int) -> list[bool]:
    """The layouts (``swapped`` values) in which ``module``'s A/B fit a parameter ``shape``."""
    a, b = module.a_shape, module.b_shape
    if len(a) != 2 or len(b) != 2:
        return []
    if len(shape) == 2:
        return [True] if (a[0], b[1], a[1], b[0]) == (r, r, shape[1], shape[0]) else []
    if len(shape) != 3:
        return []
    experts, d1, d2 = shape
    if a[0] != r * experts or b[1] != r * experts:
        return []
    layouts = []
    if (a[1], b[0]) == (d2, d1):
        layouts.append(True)
    if (a[1], b[0]) == (d1, d2):
        layouts.append(False)
    return layouts


def _narrow(
    options: list[list[tuple[str, bool]]], stored: list[StoredParameter]
) -> list[list[tuple[str, bool]]]:
    """Drop the layouts the checkpoint and the module rule out.

    A parameter the checkpoint stores per expert is a stack of ``nn.Linear`` weights
    (``[out, in]``; the conversion rules stack and concatenate, never transpose), so it is
    ``[E, out, in]``. And one experts module stores all its parameters one way (transformers'
    ``is_transposed`` is a property of the module), so its wrappers share one layout.
    """
    per_expert = {sp.name.rsplit(".", 1)[1] for sp in stored if sp.pieces[0].expert is not None}
    kept = [
        o
        for o in options
        if all(swapped for p, swapped in o if p in per_expert)
        and len({swapped for _, swapped in o}) == 1
    ]
    return kept


def bind_parameters(
    adapter: AdapterDescription,
    manifest: BaseManifest,
    rank_alpha: Callable[[str], tuple[int, float, float]],
) -> Binding:
    """Bind every parameter LoRA module of ``adapter`` to its parameter in ``manifest``.

    ``rank_alpha(module_name) -> (r, alpha, scale)`` resolves rank and alpha for a
    parameter's full name (``rank_pattern`` / ``alpha_pattern`` match it, as in PEFT).
    """
    binding = Binding()
    groups: dict[str, list[LoraModule]] = {}
    for m in adapter.modules.values():
        if m.kind == "parameter":
            groups.setdefault(m.module_path, []).append(m)
    if not groups:
        return binding
    names = sorted({f"{path}.{p}" for path, ms in groups.items() for m in ms for p in m.parameters})
    stored, missing = stored_parameters(manifest, names)
    for path, wrappers in sorted(groups.items()):
        wrappers.sort(key=lambda m: m.nesting)
        params = sorted({p for m in wrappers for p in m.parameters})
        usable = [p for p in params if f"{path}.{p}" in stored]
        options: list[list[tuple[str, bool]]] = []
        for choice in itertools.permutations(usable, len(wrappers)):
            layouts = []
            for m, p in zip(wrappers, choice, strict=True):
                if p not in m.parameters:
                    break
                r = rank_alpha(f"{path}.{p}")[0]
                fits = _fits(m, stored[f"{path}.{p}"].shape, r)
                if not fits:
                    break
                layouts.append([(p, sw) for sw in fits])
            else:
                options.extend([list(combo) for combo in itertools.product(*layouts)])
        options = _narrow(options, [stored[f"{path}.{p}"] for p in usable])
        if len(options) == 1:
            for m, (p, swapped) in zip(wrappers, options[0], strict=True):
                full = f"{path}.{p}"
                r, alpha, scale = rank_alpha(full)
                sp = stored[full]
                experts = sp.shape[0] if len(sp.shape) == 3 else 1
                bound = replace(m, r=r, alpha=alpha, scale=scale, num_experts=experts)
                binding.bound.append(BoundParameter(bound, full, sp, swapped))
            continue
        module = wrappers[0].name
        if not options:
            why = [missing[f"{path}.{p}"] for p in params if f"{path}.{p}" in missing]
            shapes = (
                ", ".join(f"{p} {list(stored[f'{path}.{p}'].shape)}" for p in usable)
                or "none found"
            )
            lora = "; ".join(
                f"{m.name}: lora_A {list(m.a_shape)}, lora_B {list(m.b_shape)}" for m in wrappers
            )
            binding.problems.append(
                (
                    "missing_base_module" if why and not usable else "shape_mismatch",
                    module,
                    f"target_parameters {params} of {path}: the LoRA tensors ({lora}) fit none of"
                    f" the base's parameters ({shapes})" + (f". {' '.join(why)}" if why else ""),
                )
            )
        else:
            binding.problems.append(
                (
                    "ambiguous_parameter",
                    module,
                    f"the LoRA tensors of {path} fit its parameters {params} in more than one way"
                    " (equal or square shapes): loreg cannot tell which parameter, or which"
                    " layout, each wrapper adapts, and refuses rather than guess",
                )
            )
    return binding
