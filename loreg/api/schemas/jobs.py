"""Request and response bodies of ``/api/v1/jobs`` (docs/design.md §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loreg.api.schemas.common import Schema

JobTypeName = Literal["validate", "merge", "export", "combine"]
JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobCreate(BaseModel):
    """A job to queue. ``params`` depend on ``type``:

    - ``validate``: ``{"adapter": REF}``
    - ``export``: ``{"adapter": REF, "dtype": "float16"|"bfloat16"|"float32"|null}``
    - ``merge``: ``{"base": NAME, "adapters": [{"ref": REF, "weight": 1.0}, ...],
      "method": "linear", "dtype": null, "max_shard_bytes": null, "density": null,
      "majority_sign_method": "total", "svd_rank": null, "svd_clamp": null, "seed": 0}``
    - ``combine``: the merge knobs without ``base``/``dtype``/``max_shard_bytes``, plus
      ``"target": "NS/NAME[:TAG]"``, ``"description"``, ``"labels"``.
    """

    model_config = ConfigDict(extra="forbid")

    type: JobTypeName
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="Higher runs first; only administrators may raise it.",
    )


class JobOut(Schema):
    id: str
    type: str
    status: JobStatusName
    priority: int
    params: dict[str, Any]
    submitted_by: str | None = Field(description="User name of the submitter.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    attempts: int
    max_attempts: int
    worker: str | None = Field(description="Worker holding the lease while running.")
    lease_expires_at: datetime | None
    progress: float = Field(ge=0, le=1)
    progress_message: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    cancel_requested: bool
    outputs_expire_at: datetime | None
    duration_seconds: float | None = Field(description="From first start to finish (or now).")
    deduplicated: bool = Field(
        default=False,
        description="On submit: an identical job already existed and is returned instead.",
    )


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class JobOutputFile(BaseModel):
    path: str
    digest: str
    size: int


class JobOutputs(BaseModel):
    """A job's output files, each downloadable at ``GET /api/v1/blobs/{digest}``."""

    job_id: str
    files: list[JobOutputFile]
    total_size: int
