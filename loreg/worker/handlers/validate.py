"""``validate``: load an adapter's tensors and check what headers alone cannot.

The push already checked the header against the base manifest (shapes, names); this job
checks it again with the compatibility rules of today, reads the bytes
(``loreg.merge.checks``: A/B present, ranks, finite values, per-module norms), stores the
report and sets the version's state to ``valid`` or ``invalid``. An invalid adapter is a
*successful* job: the check ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from loreg.db.models import ValidationState
from loreg.formats.compat import adapter_findings, bind, check_compatibility
from loreg.formats.targets import BoundParameter
from loreg.merge.checks import check_tensors, error_finding
from loreg.merge.sources import AdapterSource
from loreg.services import validation
from loreg.services.adapters import REPORT_FINDINGS_MAX
from loreg.worker.context import JobContext, Outcome


def run(ctx: JobContext) -> Outcome:
    (inp,) = ctx.params["inputs"]
    version_id = int(inp["version_id"])
    ctx.progress(0.05, "downloading adapter", force=True)
    folder = ctx.fetch_version(version_id, "adapter")
    ctx.check_cancel()
    ctx.progress(0.4, "reading tensors", force=True)

    problems: list[dict[str, Any]] = []
    compat: dict[str, Any] | None = None
    stats: dict[str, Any] = {}
    try:
        source = AdapterSource(folder)
    except Exception as exc:  # unreadable adapter: that is the finding
        problems.append(error_finding("unreadable", str(exc)[:1000]))
    else:
        with source:
            desc = source.desc
            with ctx.sessions() as s:
                pushed = validation.pushed_against(s, version_id)
            bound: dict[str, BoundParameter] = {}
            if pushed.manifest is not None:
                report = check_compatibility(
                    desc,
                    pushed.manifest,
                    expected_fingerprint=pushed.report.get("expected_fingerprint"),
                )
                report.match_hint = pushed.report.get("match_hint")
                compat = report.to_dict(limit=REPORT_FINDINGS_MAX)
                problems += [f.to_dict() for f in report.problems]
                bound = {bp.module.name: bp for bp in bind(desc, pushed.manifest).bound}
            else:  # no base to check against: the adapter-only findings still apply
                problems += [f.to_dict() for f in adapter_findings(desc)]
            checked = check_tensors(source, bound)
            problems += checked.problems
            stats = checked.stats
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
        validation.record(session, version_id, state, report_doc)
        return {}

    ctx.log("validate.done", state=state, problems=len(problems), modules=len(stats))
    return Outcome(
        result={
            "state": state,
            "problems": len(problems),
            "modules": len(stats),
            "version": inp["resolved"],
        },
        commit=commit,
    )
