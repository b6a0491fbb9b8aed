"""What differs between two versions of an adapter: facts, config, targets, labels, norms."""

from __future__ import annotations

import math
from typing import Any

from loreg.db.models import AdapterVersion
from loreg.ui import charts
from loreg.ui.formatting import DASH, TIMES, as_text, human_count, human_size, when


def _side_by_side(
    a: dict[str, Any], b: dict[str, Any], *, ordered: bool = False
) -> list[dict[str, Any]]:
    """Rows of (key, a, b, differs): keys sorted, or in ``a``'s order when ``ordered``."""
    keys = list(dict.fromkeys([*a, *b])) if ordered else sorted(set(a) | set(b))
    rows = []
    for key in keys:
        left, right = as_text(a.get(key)), as_text(b.get(key))
        rows.append({"key": key, "a": left, "b": right, "differs": left != right})
    return rows


def _modules(v: AdapterVersion) -> list[str]:
    targets = v.target_modules
    if isinstance(targets, list):
        return sorted(str(t) for t in targets)
    return [str(targets)] if targets else []


def _norms(v: AdapterVersion) -> dict[str, float | None]:
    report = v.validation_report if isinstance(v.validation_report, dict) else {}
    modules = report.get("modules") if isinstance(report.get("modules"), dict) else {}
    out: dict[str, float | None] = {}
    for name, stats in (modules or {}).items():
        raw = stats.get("delta_norm") if isinstance(stats, dict) else None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            out[str(name)] = float(raw)
        else:
            out[str(name)] = None
    return out


def _facts(v: AdapterVersion) -> dict[str, Any]:
    return {
        "base model": v.base_model.name if v.base_model is not None else v.base_model_name,
        "PEFT type": v.peft_type,
        "rank": v.r,
        "alpha": f"{v.lora_alpha:g}",
        "rsLoRA": "yes" if v.use_rslora else "no",
        "DoRA": "yes" if v.use_dora else "no",
        "rank pattern": v.rank_pattern or None,
        "alpha pattern": v.alpha_pattern or None,
        "modules to save": v.modules_to_save or None,
        "dtype": v.dtype,
        "parameters": human_count(v.num_parameters),
        "size": human_size(v.size_bytes),
        "validation": v.validation_state,
        "created": when(v.created_at),
    }


def compare_versions(a: AdapterVersion, b: AdapterVersion) -> dict[str, Any]:
    """What differs between two versions: facts, config, targets, labels, module norms."""
    na, nb = _norms(a), _norms(b)
    norm_rows = []
    for module in sorted(set(na) | set(nb), key=charts.module_sort_key):
        x, y = na.get(module), nb.get(module)
        ratio = DASH
        if x is not None and y is not None and x > 0:
            ratio = f"{y / x:.3g}{TIMES}"
        differs = (x is None) != (y is None) or (
            x is not None and y is not None and not math.isclose(x, y, rel_tol=1e-6)
        )
        norm_rows.append(
            {
                "module": module,
                "a": charts.fmt_norm(x) if module in na else DASH,
                "b": charts.fmt_norm(y) if module in nb else DASH,
                "ratio": ratio,
                "differs": differs,
            }
        )
    ta, tb = set(_modules(a)), set(_modules(b))
    targets = [
        {"module": m, "a": m in ta, "b": m in tb, "differs": (m in ta) != (m in tb)}
        for m in sorted(ta | tb)
    ]
    return {
        "facts": _side_by_side(_facts(a), _facts(b), ordered=True),
        "config": _side_by_side(a.adapter_config or {}, b.adapter_config or {}),
        "targets": targets,
        "labels": _side_by_side(a.labels or {}, b.labels or {}),
        "norms": norm_rows,
        "norms_missing": [v.number for v, n in ((a, na), (b, nb)) if not n],
    }
