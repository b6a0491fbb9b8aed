"""What a merge does to each base tensor, decided before a byte is read or written.

A ``TensorPlan`` per base tensor says whether it is copied through untouched (in chunks) or
computed whole: replaced by a modules_to_save tensor, changed by LoRA deltas (and lora_B
biases), by parameter LoRA on experts, or by trainable-token rows. Planning refuses, with
every reason at once, adapters whose tensors do not fit the base, so that a merge never
fails half-way for a reason known at the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loreg.errors import Incompatible
from loreg.formats.base import manifest_from_headers
from loreg.formats.compat import bind, check_compatibility, checkpoint_names
from loreg.formats.targets import BoundParameter, Piece
from loreg.formats.types import BaseManifest, LoraModule, TensorInfo, TokenModule
from loreg.merge.delta import implied_weight_shape
from loreg.merge.options import EXACT_METHODS
from loreg.merge.sources import FLOAT_DTYPES, AdapterSource, BaseCheckpoint
from loreg.merge.writer import TensorSpec


@dataclass
class TensorPlan:
    """One base tensor: where it is, what is written for it, and what changes it."""

    file: str
    info: TensorInfo
    out: TensorSpec
    replace: tuple[int, str] | None = None  # (adapter index, adapter key)
    loras: list[tuple[int, LoraModule]] = field(default_factory=list)
    biases: list[tuple[int, LoraModule]] = field(default_factory=list)
    experts: list[tuple[int, BoundParameter, Piece]] = field(default_factory=list)
    tokens: list[tuple[int, TokenModule]] = field(default_factory=list)

    @property
    def computed(self) -> bool:
        """Does this tensor need the whole tensor in memory (merged or replaced)?"""
        return (
            self.replace is not None
            or bool(self.loras)
            or bool(self.biases)
            or bool(self.experts)
            or bool(self.tokens)
        )

    @property
    def cast(self) -> bool:
        return self.out.dtype != self.info.dtype


def check_sources(base: BaseCheckpoint, adapters: Sequence[AdapterSource]) -> BaseManifest:
    """Validate's compatibility check for every adapter, before a byte is written.

    The manifest comes from the base's headers and config.json (tied weights, model type),
    exactly as ``loreg validate`` reads it; any problem refuses the merge with that report.
    """
    manifest = manifest_from_headers(base.path, base.headers)
    for src in adapters:
        report = check_compatibility(src.desc, manifest)
        if not report.ok:
            text = report.format(max_chars=6000)
            raise Incompatible(
                f"{src.path} does not fit the base at {base.path}; nothing was written:\n{text}",
                details=report.to_dict(),
            )
    return manifest


def plan_merge(
    base: BaseCheckpoint,
    adapters: Sequence[AdapterSource],
    out_dtype: str | None,
    manifest: BaseManifest,
    weights: Sequence[float],
    method: str,
) -> list[TensorPlan]:
    """One plan per base tensor, in the base's order; ``Incompatible`` listing every
    adapter tensor that does not fit."""
    planner = _Planner(base, manifest, out_dtype)
    for i, src in enumerate(adapters):
        stored_as = checkpoint_names(src.desc, manifest)  # names the checkpoint renamed
        planner.add_saved(i, src, stored_as)
        planner.add_loras(i, src, stored_as)
        planner.add_parameters(i, src, method)
        planner.add_tokens(i, src, stored_as, weights[i])
    for plan in planner.plans.values():
        planner.check(plan, adapters)
    if planner.problems:
        raise Incompatible(
            f"{len(planner.problems)} adapter tensor(s) do not fit the base",
            details=planner.problems,
        )
    return list(planner.plans.values())


class _Planner:
    """Plans by base tensor name, and the problems found so far."""

    def __init__(self, base: BaseCheckpoint, manifest: BaseManifest, out_dtype: str | None) -> None:
        self.manifest = manifest
        self.plans: dict[str, TensorPlan] = {}
        for rel, info in base.order:
            dtype = (
                out_dtype if out_dtype is not None and info.dtype in FLOAT_DTYPES else info.dtype
            )
            self.plans[info.name] = TensorPlan(rel, info, TensorSpec(info.name, dtype, info.shape))
        self.problems: list[dict[str, Any]] = []

    def _missing(self, src: AdapterSource, tensor: str, problem: str = "not in base") -> None:
        self.problems.append({"adapter": str(src.path), "tensor": tensor, "problem": problem})

    def add_saved(self, i: int, src: AdapterSource, stored_as: dict[str, str]) -> None:
        """modules_to_save: the adapter's tensor replaces the base's."""
        aliases = self.manifest.aliases
        direct = {t for sm in src.desc.saved_modules.values() for t in sm.tensors}
        saved_items = [
            (tname, key, saved.shapes[tname], saved.origin)
            for saved in src.desc.saved_modules.values()
            for tname, key in saved.tensors.items()
        ]
        # Tied copies last: PEFT loads the output layer's copy of a replaced embedding into
        # the one shared tensor after the embedding's own, so it is the one that counts.
        for tname, key, shape, origin in sorted(saved_items, key=lambda t: t[0] in aliases):
            target = aliases.get(tname)
            tied_copy = (
                self.plans.get(stored_as.get(tname, tname)) is None
                and origin == "base_layer"
                and target in direct
                and shape == src.desc.saved_shape(target)
            )
            stored = target if tied_copy and target else stored_as.get(tname, tname)
            plan = self.plans.get(stored)
            if plan is None:
                self._missing(src, tname)
                continue
            if plan.replace is not None and not (tied_copy and plan.replace[0] == i):
                raise Incompatible(
                    f"{plan.info.name} is replaced by more than one adapter's modules_to_save;"
                    " merge those adapters separately",
                    details={"tensor": plan.info.name},
                )
            plan.replace = (i, key)
            plan.out = TensorSpec(plan.info.name, plan.out.dtype, tuple(shape))

    def add_loras(self, i: int, src: AdapterSource, stored_as: dict[str, str]) -> None:
        """LoRA modules on the weights they change, lora_B biases on the layers' biases."""
        for module in src.desc.modules.values():
            if module.kind == "parameter":
                continue
            plan = self.plans.get(stored_as.get(module.base_weight, module.base_weight))
            if plan is None:
                self._missing(src, module.base_weight)
                continue
            plan.loras.append((i, module))
            if module.bias_key is not None:
                bias = self.plans.get(stored_as.get(module.base_bias, module.base_bias))
                if bias is None:
                    self._missing(src, module.base_bias, "lora_bias but the base layer has no bias")
                else:
                    bias.biases.append((i, module))

    def add_parameters(self, i: int, src: AdapterSource, method: str) -> None:
        """Parameter LoRA (``target_parameters``) on the tensors that store each expert."""
        binding = bind(src.desc, self.manifest)
        if binding.bound and method not in EXACT_METHODS:
            raise Incompatible(
                f"{src.path} adapts parameters (target_parameters); loreg merges those with"
                f" method linear or cat only, not {method}",
                details={"method": method},
            )
        for bp in binding.bound:
            for piece in bp.stored.pieces:
                self.plans[piece.tensor].experts.append((i, bp, piece))

    def add_tokens(
        self, i: int, src: AdapterSource, stored_as: dict[str, str], weight: float
    ) -> None:
        """Trainable-token rows on the embedding (or the one tensor a tied layer shares)."""
        aliases = self.manifest.aliases
        # The input embedding's rows first, then those of the output layer tied to it: the
        # order of PEFT's merge, which writes both into the one tensor.
        for tm in sorted(src.desc.token_modules.values(), key=lambda t: t.name in aliases):
            if weight != 1.0:
                raise Incompatible(
                    f"{src.path} has trainable tokens, which replace embedding rows: it can be"
                    f" merged with weight 1 only, not {weight}",
                    details={"adapter": str(src.path), "weight": weight},
                )
            tname = stored_as.get(tm.base_weight, tm.base_weight)
            self.plans[aliases.get(tname, tname)].tokens.append((i, tm))

    def check(self, plan: TensorPlan, adapters: Sequence[AdapterSource]) -> None:
        """Shapes and dtypes the changes need, and changes that cannot go together."""
        name, dtype = plan.info.name, plan.info.dtype
        for i, module in plan.loras:
            if dtype not in FLOAT_DTYPES:
                self.problems.append({"tensor": name, "problem": f"dtype {dtype}"})
            want = implied_weight_shape(module)
            if tuple(plan.out.shape) != want:
                self.problems.append(
                    {
                        "adapter": str(adapters[i].path),
                        "tensor": name,
                        "base_shape": list(plan.out.shape),
                        "lora_shape": list(want),
                    }
                )
        if (plan.experts or plan.tokens) and dtype not in FLOAT_DTYPES:
            self.problems.append({"tensor": name, "problem": f"dtype {dtype}"})
        if plan.experts and (plan.loras or plan.replace or plan.tokens):
            self.problems.append({"tensor": name, "problem": "parameter LoRA and other changes"})
        if plan.tokens and plan.loras:
            self.problems.append({"tensor": name, "problem": "trainable tokens and LoRA"})
        if len({i for i, _ in plan.tokens}) > 1:
            rows = [set(tm.indices) for _, tm in plan.tokens]
            if any(a & b for n, a in enumerate(rows) for b in rows[n + 1 :]):
                raise Incompatible(
                    f"several adapters replace the same rows of {name} (trainable"
                    " tokens); PEFT refuses to merge overlapping token ids, and so does loreg",
                    details={"tensor": name},
                )


def new_vocab_size(plans: Sequence[TensorPlan], config: dict[str, Any]) -> int | None:
    """The vocabulary size after modules_to_save replaced the embeddings with resized ones."""
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int):
        return None
    sizes = {
        p.out.shape[0]
        for p in plans
        if p.replace is not None
        and len(p.info.shape) == 2
        and p.info.shape[0] == vocab
        and p.out.shape[0] != vocab
    }
    if len(sizes) > 1:
        raise Incompatible(f"adapters resize the vocabulary inconsistently: {sorted(sizes)}")
    return sizes.pop() if sizes else None
