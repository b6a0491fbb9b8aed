"""ORM rows -> response schemas for the adapter, version, tag and base routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from loreg.api.schemas.bases import BaseOut, BaseSummary, TensorSpec
from loreg.api.schemas.versions import (
    AdapterOut,
    BaseRef,
    FileOut,
    LatestOut,
    LineageOut,
    TagOut,
    VersionOut,
)
from loreg.db.models import AdapterVersion, BaseModelRecord, Tag, Visibility
from loreg.services import adapters as svc
from loreg.services import bases as base_svc


def version_out(session: Session, version: AdapterVersion) -> VersionOut:
    return versions_out(session, [version])[0]


def versions_out(session: Session, versions: Sequence[AdapterVersion]) -> list[VersionOut]:
    if not versions:
        return []
    tags = svc.tags_by_version(session, [v.id for v in versions])
    users = svc.user_names(session, [v.created_by for v in versions])
    out = []
    for v in versions:
        adapter = v.adapter
        base = v.base_model
        lineage = [
            LineageOut(parent=svc.version_ref(p.parent), weight=p.weight, method=p.method,
                       params=p.params or {})
            for p in v.parents
        ]
        files = [FileOut(path=f.path, digest=f.blob_digest, size=f.size) for f in v.files]
        out.append(VersionOut(
            namespace=adapter.namespace.name,
            name=adapter.name,
            ref=svc.version_ref(v),
            number=v.number,
            digest=v.digest,
            peft_type=v.peft_type,
            task_type=(v.adapter_config or {}).get("task_type"),
            r=v.r,
            lora_alpha=v.lora_alpha,
            use_rslora=v.use_rslora,
            use_dora=v.use_dora,
            rank_pattern=v.rank_pattern or {},
            alpha_pattern=v.alpha_pattern or {},
            target_modules=v.target_modules,
            modules_to_save=v.modules_to_save,
            fan_in_fan_out=v.fan_in_fan_out,
            dtype=v.dtype,
            num_parameters=v.num_parameters,
            size_bytes=v.size_bytes,
            total_size=sum(f.size for f in files),
            adapter_config=v.adapter_config or {},
            base=base.name if base is not None else None,
            base_model=BaseRef(name=base.name, fingerprint=base.fingerprint) if base else None,
            base_model_name_or_path=v.base_model_name,
            labels=v.labels or {},
            description=v.description,
            owner=adapter.namespace.name,
            created_by=users.get(v.created_by) if v.created_by is not None else None,
            created_at=v.created_at,
            validation_state=v.validation_state,
            validation_report=v.validation_report,
            compatibility=v.compatibility_report,
            tags=tags.get(v.id, []),
            files=files,
            lineage=lineage,
            deleted_at=v.deleted_at,
            delete_reason=v.delete_reason,
        ))
    return out


def adapters_out(session: Session, summaries: Sequence[svc.AdapterSummary]) -> list[AdapterOut]:
    users = svc.user_names(session, [s.adapter.created_by for s in summaries])
    out = []
    for s in summaries:
        a, v = s.adapter, s.latest
        base = v.base_model.name if v is not None and v.base_model is not None else None
        latest = None
        if v is not None:
            latest = LatestOut(number=v.number, digest=v.digest, r=v.r, base=base,
                               target_modules=v.target_modules,
                               validation_state=v.validation_state, created_at=v.created_at)
        out.append(AdapterOut(
            namespace=a.namespace.name, name=a.name,
            public=a.visibility == Visibility.PUBLIC.value, visibility=a.visibility,
            description=a.description, created_at=a.created_at, updated_at=a.updated_at,
            created_by=users.get(a.created_by) if a.created_by is not None else None,
            versions_count=s.versions_count, latest=latest, base=base, tags=s.tags,
        ))
    return out


def tag_out(session: Session, tag: Tag) -> TagOut:
    users = svc.user_names(session, [tag.updated_by])
    return TagOut(
        name=tag.name, number=tag.version.number, digest=tag.version.digest,
        protected=tag.protected, automatic=tag.updated_by is None, updated_at=tag.updated_at,
        updated_by=users.get(tag.updated_by) if tag.updated_by is not None else None,
    )


def base_summary(session: Session, base: BaseModelRecord, users: dict[int, str]) -> dict[str, Any]:
    return {
        "name": base.name, "fingerprint": base.fingerprint,
        "structure_hash": base.structure_hash, "num_parameters": base.num_parameters,
        "size_bytes": base.size_bytes, "num_tensors": len(base.manifest or {}),
        "has_weights": bool(base.files), "description": base.description,
        "created_at": base.created_at,
        "created_by": users.get(base.created_by) if base.created_by is not None else None,
    }


def bases_out(session: Session, records: Sequence[BaseModelRecord]) -> list[BaseSummary]:
    users = svc.user_names(session, [b.created_by for b in records])
    return [BaseSummary(**base_summary(session, b, users)) for b in records]


def base_out(session: Session, base: BaseModelRecord) -> BaseOut:
    users = svc.user_names(session, [base.created_by])
    manifest = base_svc.manifest_of(base)
    return BaseOut(
        **base_summary(session, base, users),
        tensors={n: TensorSpec(dtype=d, shape=list(s)) for n, (d, s) in manifest.tensors.items()},
        aliases=manifest.aliases,
        files=[FileOut(path=f.path, digest=f.blob_digest, size=f.size) for f in base.files],
    )
