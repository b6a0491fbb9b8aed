"""Lineage: the parents a combined version records, and reads of a version's parents and
children as far as the actor may see.

A combined adapter records its parents (``Lineage`` rows, written when the combine job
pushes it). Reading them is filtered through the same permission predicate as every adapter
read, so a private parent or child never leaks its name to someone who could not open it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from loreg.db.models import Adapter, AdapterVersion, Lineage
from loreg.services.permissions import Actor, can_read_adapter

#: At most this many children are listed (a popular parent may have many).
MAX_CHILDREN = 100


@dataclass(frozen=True)
class Edge:
    """One parent -> child link, from the point of view of ``version``."""

    version: AdapterVersion  # the other end (a parent or a child)
    weight: float
    method: str
    position: int


def record(
    session: Session,
    child_version_id: int,
    parents: Sequence[tuple[int, float]],
    *,
    method: str,
    params: dict[str, Any],
) -> None:
    """Record a combined version's parents (``(version id, weight)`` in input order) and
    how they were combined (caller commits)."""
    for position, (parent_id, weight) in enumerate(parents):
        session.add(
            Lineage(
                child_version_id=child_version_id,
                parent_version_id=parent_id,
                position=position,
                weight=weight,
                method=method,
                params=dict(params),
            )
        )
    session.flush()


def parents(session: Session, actor: Actor, version: AdapterVersion) -> tuple[list[Edge], int]:
    """``(visible parents in position order, number hidden from the actor)``."""
    rows = list(
        session.scalars(
            select(Lineage)
            .where(Lineage.child_version_id == version.id)
            .order_by(Lineage.position)
            .options(
                selectinload(Lineage.parent)
                .selectinload(AdapterVersion.adapter)
                .selectinload(Adapter.namespace)
            )
        )
    )
    shown = [
        Edge(r.parent, r.weight, r.method, r.position)
        for r in rows
        if can_read_adapter(session, actor, r.parent.adapter)
    ]
    return shown, len(rows) - len(shown)


def children(session: Session, actor: Actor, version: AdapterVersion) -> tuple[list[Edge], int]:
    """``(visible live children, newest first, number hidden from the actor)``."""
    rows = list(
        session.scalars(
            select(Lineage)
            .join(AdapterVersion, AdapterVersion.id == Lineage.child_version_id)
            .where(Lineage.parent_version_id == version.id, AdapterVersion.deleted_at.is_(None))
            .order_by(Lineage.child_version_id.desc())
            .limit(MAX_CHILDREN)
            .options(
                selectinload(Lineage.child)
                .selectinload(AdapterVersion.adapter)
                .selectinload(Adapter.namespace)
            )
        )
    )
    shown = [
        Edge(r.child, r.weight, r.method, r.position)
        for r in rows
        if can_read_adapter(session, actor, r.child.adapter)
    ]
    return shown, len(rows) - len(shown)
