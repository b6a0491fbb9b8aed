"""Wire shapes of base models (what ``loreg.client.bases.manifest_body`` sends)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loreg.api.schemas.versions import FileOut


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: str = Field(max_length=16)
    shape: list[int] = Field(max_length=8)


class BaseCreate(BaseModel):
    """Register a base model: its manifest (from headers) and fingerprint, computed
    client-side by ``loreg.formats.base``; optionally its files, uploaded as blobs."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=256, examples=["meta-llama/Llama-3.1-8B"])
    fingerprint: str = Field(max_length=71)
    structure_hash: str | None = Field(default=None, max_length=71)
    tensors: dict[str, TensorSpec | tuple[str, list[int]]]
    size_bytes: int | None = Field(default=None, ge=0)
    num_parameters: int | None = Field(default=None, ge=0)
    tensor_files: dict[str, str] | None = None
    aliases: dict[str, str] | None = None
    config: dict[str, Any] | None = None
    files: list[FileOut] = Field(default_factory=list, max_length=1000)
    description: str = Field(default="", max_length=10_000)


class BaseSummary(BaseModel):
    name: str
    fingerprint: str
    structure_hash: str
    num_parameters: int
    size_bytes: int
    num_tensors: int
    has_weights: bool = Field(description="whether its files are in the registry (mergeable)")
    description: str
    created_at: datetime
    created_by: str | None


class BaseOut(BaseSummary):
    tensors: dict[str, TensorSpec]
    aliases: dict[str, str]
    files: list[FileOut]


class BaseList(BaseModel):
    bases: list[BaseSummary]
    next_cursor: str | None
