"""The parameters of each job type: pydantic schemas, checked when a job is submitted.

Names follow PEFT's ``add_weighted_adapter`` (``method``, ``density``,
``majority_sign_method``, ``svd_rank``, ``svd_clamp``); ``parse_params`` turns every
schema error into one ``InvalidInput`` that names each bad field.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from loreg.db.models import JobType
from loreg.errors import InvalidInput
from loreg.merge.options import Method, OutputDType, SignMethod

MAX_ADAPTERS = 32
MIN_SHARD_BYTES = 4096


class JobParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdapterInput(JobParams):
    ref: str = Field(max_length=400)
    weight: float = Field(default=1.0, ge=-100.0, le=100.0, allow_inf_nan=False)


class _CombineKnobs(JobParams):
    """The parameters of a multi-adapter method (PEFT ``add_weighted_adapter`` names)."""

    method: Method = "linear"
    density: float | None = Field(default=None, gt=0.0, le=1.0)
    majority_sign_method: SignMethod = "total"
    svd_rank: int | None = Field(default=None, ge=1, le=65536)
    svd_clamp: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


def _adapters_field(value: Any) -> Any:
    """Accept ``["ns/a", ...]`` as shorthand for ``[{"ref": "ns/a"}, ...]``."""
    if isinstance(value, list):
        return [{"ref": v} if isinstance(v, str) else v for v in value]
    return value


class MergeParams(_CombineKnobs):
    base: str | None = Field(default=None, max_length=400)
    adapters: list[AdapterInput] = Field(min_length=1, max_length=MAX_ADAPTERS)
    dtype: OutputDType | None = None
    max_shard_bytes: int | None = Field(default=None, ge=MIN_SHARD_BYTES)

    _norm = field_validator("adapters", mode="before")(_adapters_field)


class CombineParams(_CombineKnobs):
    adapters: list[AdapterInput] = Field(min_length=1, max_length=MAX_ADAPTERS)
    target: str = Field(max_length=400, validation_alias=AliasChoices("target", "to"))
    description: str = Field(default="", max_length=10_000)
    labels: dict[str, str] = Field(default_factory=dict)

    _norm = field_validator("adapters", mode="before")(_adapters_field)


class ExportParams(JobParams):
    adapter: str = Field(max_length=400)
    dtype: OutputDType | None = None


class ValidateParams(JobParams):
    adapter: str = Field(max_length=400)


_PARAM_MODELS: dict[str, type[JobParams]] = {
    JobType.MERGE.value: MergeParams,
    JobType.COMBINE.value: CombineParams,
    JobType.EXPORT.value: ExportParams,
    JobType.VALIDATE.value: ValidateParams,
}


def parse_params(job_type: str, params: Any) -> JobParams:
    """Validate a job's parameters; ``InvalidInput`` naming each bad field."""
    model = _PARAM_MODELS.get(job_type)
    if model is None:
        raise InvalidInput(
            f"unknown job type {str(job_type)[:50]!r}",
            details={"field": "type", "allowed": sorted(_PARAM_MODELS)},
        )
    if not isinstance(params, dict):
        raise InvalidInput("params must be a JSON object", details={"field": "params"})
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidInput(
            f"invalid parameters for a {job_type} job: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
            details={"errors": errors},
        ) from None
