"""Tenant isolation: blob possession grants and server-side web UI sessions.

``blob_grants`` starts filled with what was already proven before this revision:

- every blob a version lists is granted to the version's namespace (deleted versions too:
  their namespace had the bytes);
- every blob still present whose upload the audit log records (``blob.upload``) is granted
  to the uploader's personal namespace, so a push that was between its uploads and its
  version create during the upgrade still completes.

Blobs of base models and job outputs need no grant: base models are readable by every
signed-in caller, and job outputs by whoever may see the job. ``ui_sessions`` starts empty:
browsers signed in with the old token cookie sign in again.

Webhook delivery logs no longer show what receivers answered: the response bodies earlier
versions kept in ``last_error`` and ``attempt_log`` (``HTTP 500: <body>``) are cut back to
the status (``HTTP 500``).

Revision ID: 0003_tenant_isolation
Revises: 0002
Create Date: 2026-01-03
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_tenant_isolation"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "blob_grants",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["blobs.digest"],
            name=op.f("fk_blob_grants_digest_blobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_blob_grants_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", "namespace_id", name=op.f("pk_blob_grants")),
    )
    op.create_index(
        op.f("ix_blob_grants_namespace_id_digest"), "blob_grants", ["namespace_id", "digest"]
    )

    op.create_table(
        "ui_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_ui_sessions_token_id_api_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_ui_sessions")),
    )
    op.create_index(op.f("ix_ui_sessions_token_id"), "ui_sessions", ["token_id"])
    op.create_index(op.f("ix_ui_sessions_expires_at"), "ui_sessions", ["expires_at"])

    _grant_existing_blobs()
    _forget_receiver_bodies()


def _grant_existing_blobs() -> None:
    """Fill ``blob_grants`` from version files and recorded uploads (see the docstring)."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # how loreg stores timestamps on SQLite
    from_versions = sa.text(
        "SELECT DISTINCT vf.blob_digest AS digest, a.namespace_id AS namespace_id "
        "FROM version_files vf "
        "JOIN adapter_versions v ON v.id = vf.version_id "
        "JOIN adapters a ON a.id = v.adapter_id"
    )
    from_uploads = sa.text(
        "SELECT DISTINCT e.target AS digest, u.namespace_id AS namespace_id "
        "FROM audit_events e "
        "JOIN users u ON u.id = e.actor_user_id "
        "JOIN blobs b ON b.digest = e.target "
        "WHERE e.action = 'blob.upload' AND e.target_type = 'blob'"
    )
    pairs: set[tuple[str, int]] = set()
    for query in (from_versions, from_uploads):
        pairs.update((str(d), int(n)) for d, n in bind.execute(query))
    table = sa.table(
        "blob_grants",
        sa.column("digest", sa.String()),
        sa.column("namespace_id", sa.Integer()),
        sa.column("created_at", TS),
    )
    rows = [{"digest": d, "namespace_id": n, "created_at": now} for d, n in sorted(pairs)]
    for i in range(0, len(rows), 1000):
        op.bulk_insert(table, rows[i : i + 1000])


def _status_only(error: object) -> object:
    """``HTTP 500: <body>`` -> ``HTTP 500``; anything else unchanged."""
    if isinstance(error, str) and error.startswith("HTTP ") and ": " in error:
        return error.split(": ", 1)[0]
    return error


def _forget_receiver_bodies() -> None:
    bind = op.get_bind()
    deliveries = sa.table(
        "webhook_deliveries",
        sa.column("id", sa.Integer()),
        sa.column("last_error", sa.Text()),
        sa.column("attempt_log", JSON),
    )
    rows = bind.execute(
        sa.select(deliveries.c.id, deliveries.c.last_error, deliveries.c.attempt_log)
    ).all()
    for delivery_id, last_error, log in rows:
        entries = log if isinstance(log, list) else []
        cleaned = [
            {**e, "error": _status_only(e.get("error"))} if isinstance(e, dict) else e
            for e in entries
        ]
        if _status_only(last_error) != last_error or cleaned != entries:
            bind.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(last_error=_status_only(last_error), attempt_log=cleaned)
            )


def downgrade() -> None:
    op.drop_table("ui_sessions")
    op.drop_table("blob_grants")
