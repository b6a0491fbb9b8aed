"""Initial schema: identity, content (blobs, base models, adapters, versions), jobs, audit.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Types are spelled out here rather than imported from the models, so this revision stays
what it is when the models change: timestamps are ``DateTime(timezone=True)`` (timestamptz
on PostgreSQL), JSON is JSONB on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_blobs_size_nonnegative")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_blobs")),
    )
    op.create_table(
        "namespaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('user', 'org')", name=op.f("ck_namespaces_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_namespaces")),
        sa.UniqueConstraint("name", name=op.f("uq_namespaces_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_users_namespace_id_namespaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
        sa.UniqueConstraint("namespace_id", name=op.f("uq_users_namespace_id")),
    )
    op.create_table(
        "adapters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("visibility", sa.String(length=8), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "visibility IN ('private', 'public')", name=op.f("ck_adapters_visibility")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_adapters_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_adapters_namespace_id_namespaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapters")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_adapters_namespace_id_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name=op.f("ck_api_tokens_scope")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["users.id"],
            name=op.f("fk_audit_events_actor_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_actor_user_id"), "audit_events", ["actor_user_id"])
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])
    op.create_index(
        op.f("ix_audit_events_target_type_target"), "audit_events", ["target_type", "target"]
    )
    op.create_table(
        "base_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("fingerprint", sa.String(length=71), nullable=False),
        sa.Column("structure_hash", sa.String(length=71), nullable=False),
        sa.Column("manifest", JSON, nullable=False),
        sa.Column("num_parameters", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("config", JSON, nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_base_models_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_models")),
        sa.UniqueConstraint("name", name=op.f("uq_base_models_name")),
    )
    op.create_index(op.f("ix_base_models_fingerprint"), "base_models", ["fingerprint"])
    op.create_index(op.f("ix_base_models_structure_hash"), "base_models", ["structure_hash"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("dedupe_key", sa.String(length=256), nullable=True),
        sa.Column("submitted_by", sa.Integer(), nullable=True),
        sa.Column("namespace_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("progress_message", sa.Text(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("outputs_expire_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint(
            "type IN ('validate', 'merge', 'export', 'combine')", name=op.f("ck_jobs_type")
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_jobs_progress_range")),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_jobs_namespace_id_namespaces"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by"],
            ["users.id"],
            name=op.f("fk_jobs_submitted_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_dedupe_key"), "jobs", ["dedupe_key"])
    op.create_index(op.f("ix_jobs_namespace_id"), "jobs", ["namespace_id"])
    op.create_index(op.f("ix_jobs_outputs_expire_at"), "jobs", ["outputs_expire_at"])
    op.create_index(op.f("ix_jobs_status_lease_expires_at"), "jobs", ["status", "lease_expires_at"])
    op.create_index(
        op.f("ix_jobs_status_priority_created_at"), "jobs", ["status", "priority", "created_at"]
    )
    op.create_index(op.f("ix_jobs_submitted_by"), "jobs", ["submitted_by"])
    op.create_table(
        "memberships",
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.CheckConstraint("role IN ('read', 'write', 'admin')", name=op.f("ck_memberships_role")),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_memberships_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("namespace_id", "user_id", name=op.f("pk_memberships")),
    )
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"])
    op.create_table(
        "adapter_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("peft_type", sa.String(length=32), nullable=False),
        sa.Column("r", sa.Integer(), nullable=False),
        sa.Column("lora_alpha", sa.Float(), nullable=False),
        sa.Column("use_rslora", sa.Boolean(), nullable=False),
        sa.Column("use_dora", sa.Boolean(), nullable=False),
        sa.Column("rank_pattern", JSON, nullable=False),
        sa.Column("alpha_pattern", JSON, nullable=False),
        sa.Column("target_modules", JSON, nullable=False),
        sa.Column("modules_to_save", JSON, nullable=True),
        sa.Column("fan_in_fan_out", sa.Boolean(), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=True),
        sa.Column("num_parameters", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("adapter_config", JSON, nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=True),
        sa.Column("base_model_name", sa.String(length=1024), nullable=True),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("validation_state", sa.String(length=8), nullable=False),
        sa.Column("validation_report", JSON, nullable=True),
        sa.Column("compatibility_report", JSON, nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by", sa.Integer(), nullable=True),
        sa.Column("delete_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "validation_state IN ('pending', 'valid', 'invalid')",
            name=op.f("ck_adapter_versions_validation_state"),
        ),
        sa.CheckConstraint("number >= 1", name=op.f("ck_adapter_versions_number_positive")),
        sa.CheckConstraint("r >= 1", name=op.f("ck_adapter_versions_r_positive")),
        sa.ForeignKeyConstraint(
            ["adapter_id"],
            ["adapters.id"],
            name=op.f("fk_adapter_versions_adapter_id_adapters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["base_model_id"],
            ["base_models.id"],
            name=op.f("fk_adapter_versions_base_model_id_base_models"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_adapter_versions_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by"],
            ["users.id"],
            name=op.f("fk_adapter_versions_deleted_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_versions")),
        sa.UniqueConstraint(
            "adapter_id", "digest", name=op.f("uq_adapter_versions_adapter_id_digest")
        ),
        sa.UniqueConstraint(
            "adapter_id", "number", name=op.f("uq_adapter_versions_adapter_id_number")
        ),
    )
    op.create_index(
        op.f("ix_adapter_versions_base_model_id"), "adapter_versions", ["base_model_id"]
    )
    op.create_index(op.f("ix_adapter_versions_created_at"), "adapter_versions", ["created_at"])
    op.create_index(op.f("ix_adapter_versions_digest"), "adapter_versions", ["digest"])
    op.create_index(op.f("ix_adapter_versions_r"), "adapter_versions", ["r"])
    op.create_index(
        op.f("ix_adapter_versions_validation_state"), "adapter_versions", ["validation_state"]
    )
    op.create_table(
        "base_model_files",
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("blob_digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_model_id"],
            ["base_models.id"],
            name=op.f("fk_base_model_files_base_model_id_base_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["blob_digest"],
            ["blobs.digest"],
            name=op.f("fk_base_model_files_blob_digest_blobs"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("base_model_id", "path", name=op.f("pk_base_model_files")),
    )
    op.create_index(op.f("ix_base_model_files_blob_digest"), "base_model_files", ["blob_digest"])
    op.create_table(
        "job_artifacts",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("blob_digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_digest"],
            ["blobs.digest"],
            name=op.f("fk_job_artifacts_blob_digest_blobs"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_artifacts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "path", name=op.f("pk_job_artifacts")),
    )
    op.create_index(op.f("ix_job_artifacts_blob_digest"), "job_artifacts", ["blob_digest"])
    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("child_version_id", sa.Integer(), nullable=False),
        sa.Column("parent_version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["child_version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_lineage_child_version_id_adapter_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_lineage_parent_version_id_adapter_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage")),
        sa.UniqueConstraint(
            "child_version_id", "position", name=op.f("uq_lineage_child_version_id_position")
        ),
    )
    op.create_index(op.f("ix_lineage_parent_version_id"), "lineage", ["parent_version_id"])
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"],
            ["adapters.id"],
            name=op.f("fk_tags_adapter_id_adapters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_tags_updated_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_tags_version_id_adapter_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
        sa.UniqueConstraint("adapter_id", "name", name=op.f("uq_tags_adapter_id_name")),
    )
    op.create_index(op.f("ix_tags_version_id"), "tags", ["version_id"])
    op.create_table(
        "version_files",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("blob_digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_digest"],
            ["blobs.digest"],
            name=op.f("fk_version_files_blob_digest_blobs"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_version_files_version_id_adapter_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "path", name=op.f("pk_version_files")),
    )
    op.create_index(op.f("ix_version_files_blob_digest"), "version_files", ["blob_digest"])
    op.create_table(
        "version_labels",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_version_labels_version_id_adapter_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "key", name=op.f("pk_version_labels")),
    )
    op.create_index(op.f("ix_version_labels_key_value"), "version_labels", ["key", "value"])
    op.create_table(
        "version_target_modules",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("module", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_version_target_modules_version_id_adapter_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "module", name=op.f("pk_version_target_modules")),
    )
    op.create_index(op.f("ix_version_target_modules_module"), "version_target_modules", ["module"])


def downgrade() -> None:
    op.drop_table("version_target_modules")
    op.drop_table("version_labels")
    op.drop_table("version_files")
    op.drop_table("tags")
    op.drop_table("lineage")
    op.drop_table("job_artifacts")
    op.drop_table("base_model_files")
    op.drop_table("adapter_versions")
    op.drop_table("memberships")
    op.drop_table("jobs")
    op.drop_table("base_models")
    op.drop_table("audit_events")
    op.drop_table("api_tokens")
    op.drop_table("adapters")
    op.drop_table("users")
    op.drop_table("namespaces")
    op.drop_table("blobs")
