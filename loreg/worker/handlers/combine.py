"""``combine``: several adapters on one base -> a new adapter version with its lineage.

The merge engine combines the adapters' dense deltas (PEFT's ``add_weighted_adapter``
methods, exact for linear/cat, best rank-k otherwise) into a PEFT folder; the worker uploads
it and, in the job's finishing transaction, pushes it as a new version of the target
(with the submitter's rights, checked again now) and records one lineage row per parent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from loreg.db.models import Lineage, User
from loreg.errors import Unavailable
from loreg.merge.options import OPTION_NAMES, MethodOptions
from loreg.services.permissions import Principal
from loreg.worker.context import JobContext, Outcome


def engine() -> Callable[..., Any]:
    """The merge engine's offline combine (``loreg.merge.combine_adapters``)."""
    for module in ("loreg.merge", "loreg.merge.combine"):
        try:
            fn = getattr(importlib.import_module(module), "combine_adapters", None)
        except ImportError:
            fn = None
        if callable(fn):
            return fn
    raise Unavailable("this build's merge engine has no combine_adapters")


def run(ctx: JobContext) -> Outcome:
    p = ctx.params
    inputs: list[dict[str, Any]] = p["inputs"]
    ctx.progress(0.0, "downloading adapters", force=True)
    adapters = [
        (ctx.fetch_version(int(i["version_id"]), f"a{n}"), float(i.get("weight", 1.0)))
        for n, i in enumerate(inputs)
    ]
    ctx.check_cancel()
    ctx.progress(0.3, f"combining with {p.get('method')}", force=True)
    out = ctx.workdir / "out"
    knobs = {k: p[k] for k in OPTION_NAMES if p.get(k) is not None}
    engine()(adapters, out, device=ctx.device, options=MethodOptions(**knobs))
    ctx.check_cancel()
    target: dict[str, Any] = p["target"]
    submitted_by = ctx.submitted_by

    def commit(session: Session, artifacts: Sequence[Any]) -> dict[str, Any]:
        from loreg.services import adapters as adapters_service
        from loreg.services.manifests import FileEntry

        user = session.get(User, submitted_by) if submitted_by is not None else None
        if user is None:
            raise Unavailable("the submitter of this combine no longer exists")
        actor = Principal(user_id=user.id, username=user.name, namespace_id=user.namespace_id,
                          is_admin=user.is_admin, scope="write")
        files = [FileEntry(a.path, a.digest, a.size) for a in artifacts]
        spec = adapters_service.PushSpec(
            files=files, base=str(p["base"]["name"]) if p.get("base") else None,
            tags=[target["tag"]] if target.get("tag") else [],
            labels=dict(p.get("labels") or {}),
            description=p.get("description") or None,
        )
        pushed = adapters_service.push_version(
            session, ctx.store, actor, target["namespace"], target["name"], spec,
            max_version_bytes=ctx.settings.max_version_bytes,
            max_tensors=ctx.settings.max_adapter_tensors)
        version = pushed.version
        if pushed.created:
            for pos, i in enumerate(inputs):
                session.add(Lineage(child_version_id=version.id,
                                    parent_version_id=int(i["version_id"]), position=pos,
                                    weight=float(i.get("weight", 1.0)),
                                    method=str(p.get("method") or "linear"),
                                    params={k: v for k, v in knobs.items() if k != "method"}))
            session.flush()
        ref = f"{target['namespace']}/{target['name']}@{version.number}"
        return {"version": {"ref": ref, "number": version.number, "digest": version.digest,
                            "created": pushed.created}}

    return Outcome(result={"inputs": [i["resolved"] for i in inputs],
                           "method": p.get("method")},
                   output_dir=out, commit=commit)

