"""Wire shapes of the upload check (docs/design.md §5, step 1)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UploadCheck(BaseModel):
    """Which of these digests does the registry lack?"""

    model_config = ConfigDict(extra="forbid")

    digests: list[str] = Field(max_length=10_000, description="sha256:<hex> digests")


class UploadCheckResult(BaseModel):
    missing: list[str] = Field(description="the digests to PUT, in the order asked")


class BlobInfo(BaseModel):
    digest: str
    size: int
