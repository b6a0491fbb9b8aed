"""``validate``: load an adapter's tensors and check what headers alone cannot.

The push already checked the header against the base manifest (shapes, names); this job
reads the bytes: every LoRA module's A/B present with shapes that agree with the base
weight, ranks that agree with the config (``r`` / ``rank_pattern``), every value finite,
no keys PEFT would silently ignore. It stores a report with per-module statistics (the
norm of the delta ``scale * B @ A`` and of A and B, for the UI) and sets the version's
state to ``valid`` or ``invalid``. An invalid adapter is a *successful* job: the check ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from sqlalchemy.orm import Session

from loreg.db.models import AdapterVersion, BaseModelRecord, ValidationState
from loreg.formats.compat import adapter_findings, bind, check_compatibility
from loreg.formats.peft import read_adapter
from loreg.formats.targets import BoundParameter
from loreg.formats.types import AdapterDescription, LoraModule
from loreg.services import events
from loreg.services.adapters import REPORT_FINDINGS_MAX
from loreg.worker.context import JobContext, Outcome

ADAPTER_FILE = "adapter_model.safetensors"


def delta_norm(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """||scale * B @ A||_F without forming B @ A: sqrt(trace((BᵀB)(AAᵀ))), r x r work."""
    a2 = a.reshape(a.shape[0], -1).double()
    b2 = b.reshape(b.shape[0], -1).double()
    if b2.shape[1] != a2.shape[0]:  # embeddings store A [r, vocab], B [dim, r]; conv likewise
        b2 = b.reshape(-1, a.shape[0]).double()
    gram = (b2.T @ b2) * (a2 @ a2.T)
    return abs(scale) * math.sqrt(max(float(gram.sum()), 0.0))


def experts_delta_norm(a: torch.Tensor, b: torch.Tensor, scale: float, experts: int) -> float:
    """||delta||_F of a parameter LoRA over all experts: A's rows and B's columns are
    grouped per expert as PEFT lays them out (``[E*r, in]`` / ``[out, r, E]``)."""
    r = a.shape[0] // experts
    a3 = a.double().reshape(experts, r, -1)
    b3 = b.double().reshape(b.shape[0], r, experts).permute(2, 0, 1)  # [E, out, r]
    gram = (b3.transpose(1, 2) @ b3) * (a3 @ a3.transpose(1, 2))
    return abs(scale) * math.sqrt(max(float(gram.sum()), 0.0))


def _finding(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"severity": "error", "code": code, "message": message, **extra}


def check_tensors(
    folder: Path, desc: AdapterDescription, bound: dict[str, BoundParameter] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(problems, per-module stats) from the adapter's tensors.

    ``bound``: parameter LoRA modules bound to the base (their rank and experts come from
    the base's shapes); unbound ones are left to the compatibility report.
    """
    bound = bound or {}
    problems: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    with safe_open(str(folder / ADAPTER_FILE), framework="pt") as f:
        keys = set(f.keys())
        for key in sorted(keys):
            t = f.get_tensor(key)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                problems.append(_finding("non_finite", f"{key} has {bad} NaN/inf value(s)",
                                         tensor=key, count=bad))
        module: LoraModule
        for name, module in sorted(desc.modules.items()):
            if module.a_key not in keys or module.b_key not in keys:
                problems.append(_finding("missing_tensor", f"{name}: lora A or B is missing",
                                         module=name))
                continue
            if module.kind == "parameter":
                if name not in bound:
                    continue
                module = bound[name].module
            a = f.get_tensor(module.a_key).float()
            b = f.get_tensor(module.b_key).float()
            if module.e_key is not None and module.e_key in keys:  # AdaLoRA: A * E
                a = a * f.get_tensor(module.e_key).float().reshape(-1, 1)
            rank_a = a.shape[0] // module.num_experts
            rank_b = b.shape[1] // module.num_experts if b.dim() >= 2 else -1
            if module.kind == "embedding":
                rank_b = b.shape[-1]
            if rank_a != module.r or rank_b != module.r:
                problems.append(_finding(
                    "rank_mismatch",
                    f"{name}: tensors have rank {rank_a}/{rank_b}, the config says {module.r}",
                    module=name, expected=module.r, found=[rank_a, rank_b]))
                continue
            try:
                norm = (
                    experts_delta_norm(a, b, module.scale, module.num_experts)
                    if module.kind == "parameter"
                    else delta_norm(a, b, module.scale)
                )
            except RuntimeError:
                norm = float("nan")
            stats[name] = {
                "kind": module.kind, "r": module.r, "alpha": module.alpha,
                "scale": module.scale, "a_norm": float(a.norm()), "b_norm": float(b.norm()),
                "delta_norm": norm,
            }
            if module.kind == "parameter":
                stats[name].update(parameter=bound[name].parameter,
                                   experts=module.num_experts)
    return problems, stats


def run(ctx: JobContext) -> Outcome:
    (inp,) = ctx.params["inputs"]
    version_id = int(inp["version_id"])
    ctx.progress(0.05, "downloading adapter", force=True)
    folder = ctx.fetch_version(version_id, "adapter")
    ctx.check_cancel()
    ctx.progress(0.4, "reading tensors", force=True)
    from loreg.services.bases import manifest_of

    problems: list[dict[str, Any]] = []
    compat: dict[str, Any] | None = None
    stats: dict[str, Any] = {}
    try:
        desc = read_adapter(folder)
    except Exception as exc:  # unreadable adapter: that is the finding
        problems.append(_finding("unreadable", str(exc)[:1000]))
    else:
        pushed: dict[str, Any] = {}
        with ctx.sessions() as s:
            version = s.get(AdapterVersion, version_id)
            base = (s.get(BaseModelRecord, version.base_model_id)
                    if version is not None and version.base_model_id is not None else None)
            manifest = manifest_of(base) if base is not None else None
            # What the push established the adapter was trained on (docs/design.md §4).
            stored = version.compatibility_report if version is not None else None
            if isinstance(stored, dict):
                pushed = stored
        bound: dict[str, BoundParameter] = {}
        if manifest is not None:
            report = check_compatibility(
                desc, manifest, expected_fingerprint=pushed.get("expected_fingerprint"))
            report.match_hint = pushed.get("match_hint")
            compat = report.to_dict(limit=REPORT_FINDINGS_MAX)
            problems += [f.to_dict() for f in report.problems]
            bound = {bp.module.name: bp for bp in bind(desc, manifest).bound}
        else:  # no base to check against: the adapter-only findings still apply
            problems += [f.to_dict() for f in adapter_findings(desc)]
        tensor_problems, stats = check_tensors(folder, desc, bound)
        problems += tensor_problems
    ctx.check_cancel()
    state = ValidationState.VALID.value if not problems else ValidationState.INVALID.value
    report_doc = {
        "state": state,
        "problems": problems[:REPORT_FINDINGS_MAX],
        "problems_total": len(problems),
        "modules": stats,
        "compatibility": compat,
        "job_id": ctx.job_id,
    }

    def commit(session: Session, artifacts: Sequence[Any]) -> dict[str, Any]:
        version = session.get(AdapterVersion, version_id)
        if version is not None:
            version.validation_state = state
            version.validation_report = report_doc
            events.version_validated(session, version)
        return {}

    ctx.log("validate.done", state=state, problems=len(problems), modules=len(stats))
    return Outcome(
        result={"state": state, "problems": len(problems), "modules": len(stats),
                "version": inp["resolved"]},
        commit=commit,
    )
