"""The validation job's reads and writes: what a version was pushed against, and its
outcome (state and report), recorded with the event that announces it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from loreg.db.models import AdapterVersion, BaseModelRecord
from loreg.formats.types import BaseManifest
from loreg.services import events
from loreg.services.bases import manifest_of


@dataclass(frozen=True)
class PushedAgainst:
    """The base manifest a version was checked against at push (``None``: no base), and
    the compatibility report the push stored (docs/design.md §4)."""

    manifest: BaseManifest | None
    report: dict[str, Any] = field(default_factory=dict)


def pushed_against(session: Session, version_id: int) -> PushedAgainst:
    version = session.get(AdapterVersion, version_id)
    if version is None:
        return PushedAgainst(None)
    base = (
        session.get(BaseModelRecord, version.base_model_id)
        if version.base_model_id is not None
        else None
    )
    stored = version.compatibility_report
    return PushedAgainst(
        manifest_of(base) if base is not None else None, stored if isinstance(stored, dict) else {}
    )


def record(session: Session, version_id: int, state: str, report: dict[str, Any]) -> None:
    """Set the version's validation state and report (caller commits); a version that went
    away meanwhile is left alone."""
    version = session.get(AdapterVersion, version_id)
    if version is None:
        return
    version.validation_state = state
    version.validation_report = report
    events.version_validated(session, version)
