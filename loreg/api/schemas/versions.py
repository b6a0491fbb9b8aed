"""Wire shapes of adapters, versions, tags and the push request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loreg.digests import PATTERN as DIGEST_PATTERN


class FileOut(BaseModel):
    """One file of a version or base: relative path, blob digest, size."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=512, examples=["adapter_model.safetensors"])
    digest: str = Field(pattern=f"^{DIGEST_PATTERN}$")
    size: int = Field(ge=0)


class PushRequest(BaseModel):
    """Create a version from uploaded blobs (docs/design.md §5, step 3)."""

    model_config = ConfigDict(extra="forbid")

    files: list[FileOut] = Field(min_length=1, max_length=1000)
    base: str | None = Field(
        default=None,
        max_length=256,
        description="registered base model; default: the config's "
        "base_model_name_or_path when that is registered",
    )
    tags: list[str] = Field(default_factory=list, max_length=32)
    labels: dict[str, str | int | float | bool] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=10_000)
    public: bool | None = Field(default=None, description="new adapters are private")


class BaseRef(BaseModel):
    name: str
    fingerprint: str


class LineageOut(BaseModel):
    parent: str
    weight: float
    method: str
    params: dict[str, Any]


class VersionOut(BaseModel):
    """Everything docs/design.md §4 records about a version, with its files."""

    namespace: str
    name: str
    ref: str = Field(examples=["acme/support-bot@3"])
    number: int
    digest: str
    peft_type: str
    task_type: str | None
    r: int
    lora_alpha: float
    use_rslora: bool
    use_dora: bool
    rank_pattern: dict[str, Any]
    alpha_pattern: dict[str, Any]
    target_modules: Any
    modules_to_save: list[str] | None
    fan_in_fan_out: bool
    dtype: str | None
    num_parameters: int
    size_bytes: int
    total_size: int
    adapter_config: dict[str, Any]
    base: str | None
    base_model: BaseRef | None
    base_model_name_or_path: str | None
    labels: dict[str, Any]
    description: str
    owner: str
    created_by: str | None
    created_at: datetime
    validation_state: str
    validation_report: dict[str, Any] | None
    compatibility: dict[str, Any] | None
    tags: list[str]
    files: list[FileOut]
    lineage: list[LineageOut]
    deleted_at: datetime | None = None
    delete_reason: str | None = None


class PushResponse(VersionOut):
    created: bool = Field(description="false when identical content answered an existing version")
    job_id: str | None = Field(default=None, description="the queued validation job")


class VersionList(BaseModel):
    versions: list[VersionOut]
    next_cursor: str | None


class LatestOut(BaseModel):
    number: int
    digest: str
    r: int
    base: str | None
    target_modules: Any
    validation_state: str
    created_at: datetime


class AdapterOut(BaseModel):
    namespace: str
    name: str
    public: bool
    visibility: str
    description: str
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    versions_count: int
    latest: LatestOut | None
    base: str | None
    tags: dict[str, int]


class AdapterList(BaseModel):
    adapters: list[AdapterOut]
    next_cursor: str | None


class AdapterPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public: bool | None = None
    description: str | None = Field(default=None, max_length=10_000)


class TagSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | str = Field(description="version number or sha256:<hex> digest")
    protected: bool | None = Field(
        default=None, description="only namespace admins may set this or move a protected tag"
    )


class TagOut(BaseModel):
    name: str
    number: int
    digest: str
    protected: bool
    automatic: bool = Field(description="set by the registry (latest following the newest)")
    updated_at: datetime
    updated_by: str | None


class TagList(BaseModel):
    tags: list[TagOut]
