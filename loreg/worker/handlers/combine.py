"""``combine``: several adapters on one base -> a new adapter version with its lineage.

The merge engine combines the adapters' dense deltas (PEFT's ``add_weighted_adapter``
methods, exact for linear/cat, best rank-k otherwise) into a PEFT folder; the worker uploads
it and, in the job's finishing transaction, pushes it as a new version of the target
(with the submitter's rights, checked again now) and records one lineage row per parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from loreg.errors import Unavailable
from loreg.merge.combine import combine_adapters
from loreg.merge.options import OPTION_NAMES, MethodOptions
from loreg.services import accounts, adapters, lineage
from loreg.services.manifests import FileEntry
from loreg.worker.context import JobContext, Outcome


def run(ctx: JobContext) -> Outcome:
    p = ctx.params
    inputs: list[dict[str, Any]] = p["inputs"]
    ctx.progress(0.0, "downloading adapters", force=True)
    folders = [
        (ctx.fetch_version(int(i["version_id"]), f"a{n}"), float(i.get("weight", 1.0)))
        for n, i in enumerate(inputs)
    ]
    ctx.check_cancel()
    ctx.progress(0.3, f"combining with {p.get('method')}", force=True)
    out = ctx.workdir / "out"
    knobs: dict[str, Any] = {k: p[k] for k in OPTION_NAMES if p.get(k) is not None}
    combine_adapters(folders, out, device=ctx.device, options=MethodOptions(**knobs))
    ctx.check_cancel()
    target: dict[str, Any] = p["target"]
    submitted_by = ctx.submitted_by

    def commit(session: Session, artifacts: Sequence[Any]) -> dict[str, Any]:
        actor = accounts.acting_user(session, submitted_by, scope="write")
        if actor is None:
            raise Unavailable("the submitter of this combine no longer exists")
        spec = adapters.PushSpec(
            files=[FileEntry(a.path, a.digest, a.size) for a in artifacts],
            base=str(p["base"]["name"]) if p.get("base") else None,
            tags=[target["tag"]] if target.get("tag") else [],
            labels=dict(p.get("labels") or {}),
            description=p.get("description") or None,
        )
        pushed = adapters.push_version(
            session,
            ctx.store,
            actor,
            target["namespace"],
            target["name"],
            spec,
            max_version_bytes=ctx.settings.max_version_bytes,
            max_tensors=ctx.settings.max_adapter_tensors,
        )
        version = pushed.version
        if pushed.created:
            lineage.record(
                session,
                version.id,
                [(int(i["version_id"]), float(i.get("weight", 1.0))) for i in inputs],
                method=str(p.get("method") or "linear"),
                params={k: v for k, v in knobs.items() if k != "method"},
            )
        ref = f"{target['namespace']}/{target['name']}@{version.number}"
        return {
            "version": {
                "ref": ref,
                "number": version.number,
                "digest": version.digest,
                "created": pushed.created,
            }
        }

    return Outcome(
        result={"inputs": [i["resolved"] for i in inputs], "method": p.get("method")},
        output_dir=out,
        commit=commit,
    )
