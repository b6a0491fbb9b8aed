"""The metadata schema: every table of the registry (docs/design.md §3-7).

Reading order: identity (namespaces, users, memberships, tokens), content (blobs, base
models, adapters, versions and their side tables, tags, lineage), then work (jobs, job
artifacts) and the audit log.

Conventions:
- Enumerations are short strings guarded by CHECK constraints (portable; no native ENUM
  types to migrate). The ``StrEnum`` classes below list the allowed values.
- Timestamps are timezone-aware UTC (:class:`loreg.db.base.UTCDateTime`).
- Blob references point at ``blobs.digest`` with ON DELETE RESTRICT: garbage collection
  cannot drop a blob that a version, base model or job artifact still uses.
- Rows that own others (adapter -> versions -> files) cascade on delete; references to
  users that created something are SET NULL, so removing a user keeps history. Versions are
  normally soft-deleted (``deleted_at``), never removed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loreg.db.base import Base, JSONType, enum_check, utcnow

#: Lengths. Names follow docs/design.md §3; digests are ``sha256:`` + 64 hex digits.
NAME_MAX = 96
BASE_NAME_MAX = 256
DIGEST_LEN = 71
PATH_MAX = 1024
LABEL_KEY_MAX = 128
LABEL_VALUE_MAX = 512
MODULE_MAX = 512


class NamespaceKind(StrEnum):
    USER = "user"
    ORG = "org"


class Role(StrEnum):
    """A member's role in a namespace; also an API token's scope (same three levels)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


TokenScope = Role


class Visibility(StrEnum):
    PRIVATE = "private"
    PUBLIC = "public"


class ValidationState(StrEnum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"


class JobType(StrEnum):
    VALIDATE = "validate"
    MERGE = "merge"
    EXPORT = "export"
    COMBINE = "combine"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _user_fk() -> ForeignKey:
    """A reference to the user who did something: kept as NULL if the user is removed."""
    return ForeignKey("users.id", ondelete="SET NULL")


def _blob_fk() -> ForeignKey:
    return ForeignKey("blobs.digest", ondelete="RESTRICT")


def trigram_index(name: str, column: str) -> Index:
    """A GIN trigram index on ``lower(column)`` for substring search (``LIKE '%word%'``),
    PostgreSQL only (``pg_trgm``; migration 0004)."""
    return Index(
        name,
        func.lower(text(column)).label(f"{column}_lower"),
        postgresql_using="gin",
        postgresql_ops={f"{column}_lower": "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")


# --------------------------------------------------------------------------- identity


class Namespace(Base):
    """Where adapters live: a user's personal namespace or an organisation."""

    __tablename__ = "namespaces"
    __table_args__ = (enum_check("kind", NamespaceKind),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text, default="")
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="namespace", cascade="all, delete-orphan", passive_deletes=True
    )
    adapters: Mapped[list[Adapter]] = relationship(back_populates="namespace")


class User(Base):
    """An account. Its personal namespace has the same name."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="RESTRICT"), unique=True
    )
    email: Mapped[str | None] = mapped_column(String(320))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    namespace: Mapped[Namespace] = relationship(foreign_keys=[namespace_id])
    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class Membership(Base):
    """A user's role in a namespace (one row per pair: the primary key)."""

    __tablename__ = "memberships"
    __table_args__ = (enum_check("role", Role),)

    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(8))

    namespace: Mapped[Namespace] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")


class ApiToken(Base):
    """A bearer token. Only its hash is stored; ``prefix`` is shown to tell tokens apart."""

    __tablename__ = "api_tokens"
    __table_args__ = (enum_check("scope", Role),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


# --------------------------------------------------------------------------- content


class Blob(Base):
    """A blob fully present in the store. No row exists for a partial or failed upload."""

    __tablename__ = "blobs"
    __table_args__ = (CheckConstraint("size >= 0", name="size_nonnegative"),)

    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BaseModelRecord(Base):
    """A registered base model: its name, fingerprint and tensor manifest.

    (Named ``...Record`` so it never shadows pydantic's ``BaseModel`` in API code.)

    ``manifest`` maps tensor name -> ``[dtype, shape]`` so shape checks need no tensor
    bytes. ``structure_hash`` covers names, dtypes and shapes only (no values), to find
    structurally identical bases.
    """

    __tablename__ = "base_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(BASE_NAME_MAX), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    structure_hash: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONType)
    num_parameters: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(_user_fk())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    files: Mapped[list[BaseModelFile]] = relationship(
        back_populates="base_model",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="BaseModelFile.path",
    )


class BaseModelFile(Base):
    """A file of a base model's checkpoint (shards, config.json, tokenizer files)."""

    __tablename__ = "base_model_files"

    base_model_id: Mapped[int] = mapped_column(
        ForeignKey("base_models.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(PATH_MAX), primary_key=True)
    blob_digest: Mapped[str] = mapped_column(_blob_fk(), index=True)
    size: Mapped[int] = mapped_column(BigInteger)

    base_model: Mapped[BaseModelRecord] = relationship(back_populates="files")


class Adapter(Base):
    """``NAMESPACE/NAME``: a named series of immutable versions."""

    __tablename__ = "adapters"
    __table_args__ = (
        UniqueConstraint("namespace_id", "name"),
        enum_check("visibility", Visibility),
        trigram_index("ix_adapters_name_trgm", "name"),
        trigram_index("ix_adapters_description_trgm", "description"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    visibility: Mapped[str] = mapped_column(String(8), default=Visibility.PRIVATE.value)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(_user_fk())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    namespace: Mapped[Namespace] = relationship(back_populates="adapters")
    versions: Mapped[list[AdapterVersion]] = relationship(
        back_populates="adapter",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="AdapterVersion.number",
    )
    tags: Mapped[list[Tag]] = relationship(
        back_populates="adapter",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Tag.name",
    )


class AdapterVersion(Base):
    """One immutable push: numbered 1, 2, 3... per adapter, addressed also by digest.

    ``digest`` is the sha256 of the canonical manifest (sorted paths with blob digests and
    sizes). The PEFT fields are copied out of ``adapter_config`` so they can be searched;
    ``target_modules`` and ``labels`` are also mirrored into the indexed side tables
    :class:`VersionTargetModule` and :class:`VersionLabel`.
    """

    __tablename__ = "adapter_versions"
    __table_args__ = (
        UniqueConstraint("adapter_id", "number"),
        UniqueConstraint("adapter_id", "digest"),
        enum_check("validation_state", ValidationState),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("r >= 1", name="r_positive"),
        trigram_index("ix_adapter_versions_description_trgm", "description"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)

    # adapter_config.json, searchable parts (docs/design.md §4)
    peft_type: Mapped[str] = mapped_column(String(32))
    r: Mapped[int] = mapped_column(Integer, index=True)
    lora_alpha: Mapped[float] = mapped_column(Float)
    use_rslora: Mapped[bool] = mapped_column(Boolean, default=False)
    use_dora: Mapped[bool] = mapped_column(Boolean, default=False)
    rank_pattern: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    alpha_pattern: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: a list of module names, or a regex string, as the config states it
    target_modules: Mapped[Any] = mapped_column(JSONType)
    modules_to_save: Mapped[list[str] | None] = mapped_column(JSONType)
    fan_in_fan_out: Mapped[bool] = mapped_column(Boolean, default=False)
    dtype: Mapped[str | None] = mapped_column(String(16))
    num_parameters: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    adapter_config: Mapped[dict[str, Any]] = mapped_column(JSONType)

    # what it was checked against
    base_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("base_models.id", ondelete="SET NULL"), index=True
    )
    #: ``base_model_name_or_path`` as the adapter's config states it
    base_model_name: Mapped[str | None] = mapped_column(String(PATH_MAX))

    labels: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(_user_fk())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    validation_state: Mapped[str] = mapped_column(
        String(8), default=ValidationState.PENDING.value, index=True
    )
    validation_report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    compatibility_report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    # soft delete: the row and its digest stay, so references stay resolvable and auditable
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[int | None] = mapped_column(_user_fk())
    delete_reason: Mapped[str | None] = mapped_column(Text)

    adapter: Mapped[Adapter] = relationship(back_populates="versions")
    base_model: Mapped[BaseModelRecord | None] = relationship()
    files: Mapped[list[VersionFile]] = relationship(
        back_populates="version",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="VersionFile.path",
    )
    target_module_rows: Mapped[list[VersionTargetModule]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    label_rows: Mapped[list[VersionLabel]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    parents: Mapped[list[Lineage]] = relationship(
        foreign_keys="Lineage.child_version_id",
        back_populates="child",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Lineage.position",
    )


class VersionTargetModule(Base):
    """One target module of a version, so ``--target MODULE`` searches use an index."""

    __tablename__ = "version_target_modules"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="CASCADE"), primary_key=True
    )
    module: Mapped[str] = mapped_column(String(MODULE_MAX), primary_key=True, index=True)


class VersionLabel(Base):
    """One label of a version (value as text), so label searches use an index."""

    __tablename__ = "version_labels"
    __table_args__ = (Index(None, "key", "value"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(LABEL_KEY_MAX), primary_key=True)
    value: Mapped[str] = mapped_column(String(LABEL_VALUE_MAX))


class VersionFile(Base):
    """A file of a version's PEFT directory, stored as a blob."""

    __tablename__ = "version_files"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(PATH_MAX), primary_key=True)
    blob_digest: Mapped[str] = mapped_column(_blob_fk(), index=True)
    size: Mapped[int] = mapped_column(BigInteger)

    version: Mapped[AdapterVersion] = relationship(back_populates="files")


class Tag(Base):
    """A movable name for one version of an adapter (``latest``, ``prod``...)."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("adapter_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    version_id: Mapped[int] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="CASCADE"), index=True
    )
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[int | None] = mapped_column(_user_fk())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    adapter: Mapped[Adapter] = relationship(back_populates="tags")
    version: Mapped[AdapterVersion] = relationship()


class Lineage(Base):
    """A parent of a version produced by combination: its position, weight and method."""

    __tablename__ = "lineage"
    __table_args__ = (UniqueConstraint("child_version_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_version_id: Mapped[int] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="CASCADE")
    )
    parent_version_id: Mapped[int] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="RESTRICT"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    child: Mapped[AdapterVersion] = relationship(
        foreign_keys=[child_version_id], back_populates="parents"
    )
    parent: Mapped[AdapterVersion] = relationship(foreign_keys=[parent_version_id])


# --------------------------------------------------------------------------- work


def _job_id() -> str:
    return uuid.uuid4().hex


class Job(Base):
    """Work for a worker: queued, claimed under a lease, renewed, finished or re-queued.

    Claiming picks ``status='queued'`` by priority (higher first) then age, using the
    ``(status, priority, created_at)`` index; an expired ``lease_expires_at`` on a running
    job puts it back in the queue.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        enum_check("type", JobType),
        enum_check("status", JobStatus),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        Index(None, "status", "priority", "created_at"),
        Index(None, "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=_job_id)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: same key while queued or running -> same job (e.g. ``validate:<version id>``)
    dedupe_key: Mapped[str | None] = mapped_column(String(256), index=True)
    submitted_by: Mapped[int | None] = mapped_column(_user_fk(), index=True)
    namespace_id: Mapped[int | None] = mapped_column(
        ForeignKey("namespaces.id", ondelete="SET NULL"), index=True
    )

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]

    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    #: ``{"code": ..., "message": ..., "details": ...}`` like an API error
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    outputs_expire_at: Mapped[datetime | None] = mapped_column(index=True)

    artifacts: Mapped[list[JobArtifact]] = relationship(
        back_populates="job",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="JobArtifact.path",
    )


class JobArtifact(Base):
    """An output file of a job (merged shards, exported adapter files), stored as a blob."""

    __tablename__ = "job_artifacts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(PATH_MAX), primary_key=True)
    blob_digest: Mapped[str] = mapped_column(_blob_fk(), index=True)
    size: Mapped[int] = mapped_column(BigInteger)

    job: Mapped[Job] = relationship(back_populates="artifacts")


class AuditEvent(Base):
    """One write: who (actor), what (action on target), when (at), with details."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "target_type", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(_user_fk(), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(512))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))
