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
from loreg.services import reads


def version_out(session: Session, version: AdapterVersion) -> VersionOut:
    return versions_out(session, [version])[0]


def versions_out(session: Session, versions: Sequence[AdapterVersion]) -> list[VersionOut]:
    """Versions as the API shows them, loaded the way reads load them (a fixed number of
    queries for any number of versions), so every route shows a version the same way."""
    return [version_view_out(v) for v in reads.version_views(session, [v.id for v in versions])]


def version_view_out(v: reads.VersionView) -> VersionOut:
    """``VersionOut`` of a loaded version."""
    files = [FileOut(path=f.path, digest=f.digest, size=f.size) for f in v.files]
    return VersionOut(
        namespace=v.namespace,
        name=v.name,
        ref=v.ref,
        number=v.number,
        digest=v.digest,
        peft_type=v.peft_type,
        task_type=v.adapter_config.get("task_type"),
        r=v.r,
        lora_alpha=v.lora_alpha,
        use_rslora=v.use_rslora,
        use_dora=v.use_dora,
        rank_pattern=v.rank_pattern,
        alpha_pattern=v.alpha_pattern,
        target_modules=v.target_modules,
        modules_to_save=v.modules_to_save,
        fan_in_fan_out=v.fan_in_fan_out,
        dtype=v.dtype,
        num_parameters=v.num_parameters,
        size_bytes=v.size_bytes,
        total_size=sum(f.size for f in v.files),
        adapter_config=v.adapter_config,
        base=v.base_name,
        base_model=(
            BaseRef(name=v.base_name, fingerprint=v.base_fingerprint)
            if v.base_name is not None and v.base_fingerprint is not None
            else None
        ),
        base_model_name_or_path=v.base_model_name,
        labels=v.labels,
        description=v.description,
        owner=v.namespace,
        created_by=v.created_by,
        created_at=v.created_at,
        validation_state=v.validation_state,
        validation_report=v.validation_report,
        compatibility=v.compatibility_report,
        tags=v.tags,
        files=files,
        lineage=[
            LineageOut(parent=p.parent, weight=p.weight, method=p.method, params=p.params)
            for p in v.lineage
        ],
        deleted_at=v.deleted_at,
        delete_reason=v.delete_reason,
    )


def adapter_view_out(a: reads.AdapterView) -> AdapterOut:
    """``AdapterOut`` of a loaded adapter."""
    v = a.latest
    latest = None
    if v is not None:
        latest = LatestOut(
            number=v.number,
            digest=v.digest,
            r=v.r,
            base=v.base,
            target_modules=v.target_modules,
            validation_state=v.validation_state,
            created_at=v.created_at,
        )
    return AdapterOut(
        namespace=a.namespace,
        name=a.name,
        public=a.public,
        visibility=a.visibility,
        description=a.description,
        created_at=a.created_at,
        updated_at=a.updated_at,
        created_by=a.created_by,
        versions_count=a.versions_count,
        latest=latest,
        base=v.base if v is not None else None,
        tags=a.tags,
    )


def adapters_out(session: Session, summaries: Sequence[svc.AdapterSummary]) -> list[AdapterOut]:
    users = svc.user_names(session, [s.adapter.created_by for s in summaries])
    out = []
    for s in summaries:
        a, v = s.adapter, s.latest
        base = v.base_model.name if v is not None and v.base_model is not None else None
        latest = None
        if v is not None:
            latest = LatestOut(
                number=v.number,
                digest=v.digest,
                r=v.r,
                base=base,
                target_modules=v.target_modules,
                validation_state=v.validation_state,
                created_at=v.created_at,
            )
        out.append(
            AdapterOut(
                namespace=a.namespace.name,
                name=a.name,
                public=a.visibility == Visibility.PUBLIC.value,
                visibility=a.visibility,
                description=a.description,
                created_at=a.created_at,
                updated_at=a.updated_at,
                created_by=users.get(a.created_by) if a.created_by is not None else None,
                versions_count=s.versions_count,
                latest=latest,
                base=base,
                tags=s.tags,
            )
        )
    return out


def tag_out(session: Session, tag: Tag) -> TagOut:
    users = svc.user_names(session, [tag.updated_by])
    return TagOut(
        name=tag.name,
        number=tag.version.number,
        digest=tag.version.digest,
        protected=tag.protected,
        automatic=tag.updated_by is None,
        updated_at=tag.updated_at,
        updated_by=users.get(tag.updated_by) if tag.updated_by is not None else None,
    )


def base_summary(session: Session, base: BaseModelRecord, users: dict[int, str]) -> dict[str, Any]:
    return {
        "name": base.name,
        "fingerprint": base.fingerprint,
        "structure_hash": base.structure_hash,
        "num_parameters": base.num_parameters,
        "size_bytes": base.size_bytes,
        "num_tensors": len(base.manifest or {}),
        "has_weights": bool(base.files),
        "description": base.description,
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
