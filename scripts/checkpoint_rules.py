"""Regenerate loreg/formats/checkpoint_rules.json from the installed transformers.

transformers 5 loads many mixture-of-experts checkpoints by converting their tensors: the
per-expert weights a checkpoint stores (``mlp.experts.3.gate_proj.weight``) are stacked and
concatenated into the model's fused 3-D parameters (``mlp.experts.gate_up_proj``), after
renaming some module paths (``block_sparse_moe`` -> ``mlp``). PEFT adapters trained with
``target_parameters`` address those fused parameters, so loreg needs the same rules to find
the checkpoint tensors a fused parameter is made of. loreg does not import transformers at
run time; this script copies, for every model type, the renamings and the expert-stacking
converters transformers itself applies, as data. ``tests/formats/test_targets.py`` checks
that the file matches the installed transformers.

    .venv/bin/python scripts/checkpoint_rules.py            # rewrite the file
    .venv/bin/python scripts/checkpoint_rules.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "loreg" / "formats" / "checkpoint_rules.json"


def _ops(converter: Any) -> str | None:
    """``stack`` / ``stack_concat`` for the expert-fusing operations loreg reproduces."""
    from transformers.core_model_loading import Concatenate, MergeModulelist

    ops = list(converter.operations)
    if len(ops) >= 1 and type(ops[0]) is MergeModulelist and ops[0].dim == 0:
        if len(ops) == 1:
            return "stack"
        if len(ops) == 2 and type(ops[1]) is Concatenate and ops[1].dim == 1:
            return "stack_concat"
    return None


def _rule_set(transforms: list[Any]) -> dict[str, Any] | None:
    """The renamings and converters of one model type; None if some transform is of a kind
    loreg does not reproduce (its renamings could then be wrong)."""
    from transformers.core_model_loading import WeightConverter, WeightRenaming

    renames: list[dict[str, Any]] = []
    converters: list[dict[str, Any]] = []
    for t in transforms:
        entry = {"sources": list(t.source_patterns), "targets": list(t.target_patterns)}
        if type(t) is WeightRenaming:
            renames.append(entry)
        elif type(t) is WeightConverter:
            converters.append({**entry, "ops": _ops(t)})
        else:
            return None
    if not any(c["ops"] for c in converters):
        return None  # no experts to fuse: nothing loreg needs
    return {"renames": renames, "converters": converters}


def build() -> dict[str, Any]:
    import transformers
    from transformers import conversion_mapping as cm

    mapping = cm._build_checkpoint_conversion_mapping()
    sets: dict[str, dict[str, Any]] = {}
    by_content: dict[str, str] = {}
    model_types: dict[str, str] = {}
    # names other model types point to (qwen2_moe, mixtral) name a shared rule set first
    preferred = set(cm._MODEL_TO_CONVERSION_PATTERN.values())
    for name in sorted(mapping, key=lambda n: (n not in preferred, n)):
        if name == "legacy":
            continue
        rule_set = _rule_set(mapping[name])
        if rule_set is None:
            continue
        key = json.dumps(rule_set, sort_keys=True)
        canonical = by_content.setdefault(key, name)
        if canonical == name:
            sets[name] = rule_set
        model_types[name] = canonical
    from transformers.core_model_loading import WeightRenaming

    legacy_renames = [
        {"sources": list(t.source_patterns), "targets": list(t.target_patterns)}
        for t in mapping.get("legacy") or []
        if type(t) is WeightRenaming
    ]
    return {
        "generated_from": f"transformers {transformers.__version__}",
        "model_types": model_types,
        "rule_sets": sets,
        "legacy_renames": legacy_renames,
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def rules_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The part that must match transformers (not the version it was generated from)."""
    return {k: v for k, v in doc.items() if k != "generated_from"}


def main() -> None:
    doc = build()
    if "--check" in sys.argv[1:]:
        if not OUT.is_file() or rules_of(json.loads(OUT.read_text())) != rules_of(doc):
            print(f"{OUT} is out of date; run {Path(__file__).name}", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(render(doc))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
