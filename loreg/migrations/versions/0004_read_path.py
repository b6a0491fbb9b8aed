"""Read path: trigram indexes for text search (PostgreSQL).

Search by ``text`` matches a substring of an adapter's name or description or of one of its
live versions' descriptions. A B-tree cannot answer ``LIKE '%word%'``; without an index, a
search for a word that few adapters contain reads every adapter and every version. On
PostgreSQL this revision adds GIN trigram indexes (``pg_trgm``) on ``lower(name)`` and
``lower(description)`` of ``adapters`` and ``lower(description)`` of ``adapter_versions``,
built over the rows already there, so those searches cost what they find
(``loreg.services.adapters.search_rows``).

``pg_trgm`` ships with PostgreSQL and is a trusted extension (a database owner may create
it, PostgreSQL >= 13). Where it cannot be created (not installed, or not allowed), this
revision logs why and changes nothing: searches stay correct, only slower on large
registries; running ``loreg db upgrade`` again after ``CREATE EXTENSION pg_trgm`` does not
add them (the revision is recorded), so create the extension first, or add the indexes by
hand with the statements below (docs/scaling.md). SQLite (the embedded default, one
machine) needs nothing.

Revision ID: 0004_read_path
Revises: 0003_tenant_isolation
Create Date: 2026-01-05
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_read_path"
down_revision: str | None = "0003_tenant_isolation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

#: (index name, table, column) of the trigram indexes, all on ``lower(column)``.
TRIGRAM_INDEXES = (
    ("ix_adapters_name_trgm", "adapters", "name"),
    ("ix_adapters_description_trgm", "adapters", "description"),
    ("ix_adapter_versions_description_trgm", "adapter_versions", "description"),
)


def _create_extension(bind: sa.Connection) -> bool:
    """``CREATE EXTENSION IF NOT EXISTS pg_trgm`` in a savepoint; whether it exists now."""
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).first()
    if available is None:
        log.warning(
            "pg_trgm is not installed on this PostgreSQL server: text search "
            "will read every adapter on large registries (docs/scaling.md)"
        )
        return False
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning(
            "could not create the pg_trgm extension (%s): text search will read "
            "every adapter on large registries (docs/scaling.md)",
            str(exc.orig).strip().splitlines()[0],
        )
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _create_extension(bind):
        return
    for name, table, column in TRIGRAM_INDEXES:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (lower({column}) gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _table, _column in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
