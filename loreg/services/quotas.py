"""Per-namespace storage quotas (``namespaces.quota_bytes``; no quota when NULL).

Usage is *logical*: the sum of ``size_bytes`` of the namespace's live (not deleted)
versions, the number users see in ``loreg ls``. Blobs shared between versions count once
per version, as on Hugging Face Hub or Docker Hub; soft-deleted versions stop counting
at once (their bytes are reclaimed by ``loreg gc`` after the retention period).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loreg.db.models import Adapter, AdapterVersion, Namespace
from loreg.errors import InvalidInput, TooLarge
from loreg.units import format_bytes


class QuotaExceeded(TooLarge):
    """A push would take the namespace over its storage quota (HTTP 413)."""

    code = "quota_exceeded"


def usage(session: Session, namespace: Namespace) -> int:
    """Bytes the namespace's live versions take, as the quota counts them."""
    total = session.scalar(
        select(func.coalesce(func.sum(AdapterVersion.size_bytes), 0))
        .join(Adapter, Adapter.id == AdapterVersion.adapter_id)
        .where(Adapter.namespace_id == namespace.id, AdapterVersion.deleted_at.is_(None))
    )
    return int(total or 0)


def _namespace(session: Session, namespace: Namespace | str) -> Namespace:
    if isinstance(namespace, Namespace):
        return namespace
    found = session.scalar(select(Namespace).where(Namespace.name == namespace))
    if found is None:
        raise InvalidInput(f"no namespace '{namespace}'", details={"namespace": namespace})
    return found


def check_quota(session: Session, namespace: Namespace | str, incoming_bytes: int) -> None:
    """Raise ``QuotaExceeded`` (413) if adding ``incoming_bytes`` would pass the quota."""
    ns = _namespace(session, namespace)
    if ns.quota_bytes is None:
        return
    used = usage(session, ns)
    if used + incoming_bytes > ns.quota_bytes:
        free = max(ns.quota_bytes - used, 0)
        raise QuotaExceeded(
            f"namespace '{ns.name}' is over its storage quota: this push needs "
            f"{format_bytes(incoming_bytes)}, {format_bytes(free)} of "
            f"{format_bytes(ns.quota_bytes)} is free ({format_bytes(used)} used). "
            "Delete versions or ask an administrator to raise the quota.",
            details={
                "namespace": ns.name,
                "quota_bytes": ns.quota_bytes,
                "used_bytes": used,
                "incoming_bytes": incoming_bytes,
            },
        )
