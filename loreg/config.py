"""Settings: every ``LOREG_*`` variable, read once into one object that is passed down.

Nothing below the entry points (CLI, app factory, worker) reads the environment; they call
``Settings()`` once and hand the object on.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loreg.units import GiB, KiB, MiB

#: ``json_schema_extra`` key of settings that exist for the test suite, not for users;
#: docs/configuration.md leaves them out.
INTERNAL = "loreg_internal"


def is_internal(extra: object) -> bool:
    """Whether a field's ``json_schema_extra`` marks it internal."""
    return isinstance(extra, dict) and bool(extra.get(INTERNAL))


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "loreg"


class Settings(BaseSettings):
    """Configuration of a loreg server, worker or client."""

    model_config = SettingsConfigDict(env_prefix="LOREG_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Where the embedded default keeps its data.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; SQLite under home when unset.",
    )
    storage_url: str | None = Field(
        default=None,
        description="file:///path or s3://bucket/prefix; a folder under home when unset.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO); AWS when unset.",
    )
    s3_region: str | None = Field(
        default=None,
        description="Region for S3 requests and presigned URLs.",
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint that presigned download URLs point at, when clients reach the "
        "store by another address than the server does (compose: http://localhost:9000); "
        "the S3 endpoint when unset.",
    )

    url: str = Field(
        default="http://127.0.0.1:8080",
        description="Client side: the registry's base URL.",
    )
    token: str | None = Field(
        default=None,
        description="Client side: API token, overrides the stored login.",
    )
    offline: bool = Field(
        default=False,
        description="Client side: never contact the registry (like HF_HUB_OFFLINE). "
        "`loreg pull` serves versions pulled before from the local cache (by digest, or by "
        "the tag or number they were pulled by) and fails clearly for anything else.",
    )

    worker_device: Literal["auto", "cuda", "cpu"] = "auto"
    job_lease_seconds: int = Field(default=60, ge=1)
    job_max_attempts: int = Field(default=3, ge=1)
    base_cache_bytes: int = Field(
        default=200 * GiB,
        ge=0,
        description="Worker's base checkpoint cache bound.",
    )
    worker_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Idle worker's queue poll interval.",
    )
    worker_backoff_max_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait between two tries of a worker that cannot reach the "
        "database or the blob store (the wait doubles from the poll interval up to this).",
    )
    worker_health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the worker's health endpoint (`GET /healthz`, `GET /metrics`); "
        "none when unset.",
    )
    worker_health_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's health endpoint listens on (`0.0.0.0` for "
        "probes from outside the host or pod).",
    )
    worker_stall_seconds: float = Field(
        default=900.0,
        gt=0,
        description="The worker's `/healthz` answers 503 when its loop or running job has "
        "shown no sign of progress for this long (a hung worker: restart it).",
    )
    worker_test_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Sleep per merged tensor, so tests can catch a merge in flight.",
        json_schema_extra={INTERNAL: True},  # not a user setting: left out of the docs
    )

    job_outputs_expire_hours: float = Field(
        default=24.0 * 7,
        ge=0,
        description="How long the outputs of a finished merge or export job are kept; then "
        "GC frees them and the job is no longer reused for an identical submit. "
        "0 keeps them forever.",
    )

    gc_interval_hours: float = Field(
        default=24.0,
        gt=0,
        description="Workers run garbage collection at most once per this interval "
        "(across all workers).",
    )
    gc_grace_hours: float = Field(
        default=24.0,
        ge=0,
        description="GC never touches blobs or store objects younger than this "
        "(protects uploads in flight).",
    )
    gc_deleted_version_retention_hours: float = Field(
        default=24.0 * 7,
        ge=0,
        description="How long the files of a deleted version are kept (so the delete can be "
        "undone) before GC frees them.",
    )

    webhook_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Attempts of one webhook delivery before it is marked failed.",
    )
    webhook_backoff_max_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Longest wait between two attempts of a webhook delivery (the wait "
        "doubles from 10 s up to this).",
    )

    webhook_allow_networks: str = Field(
        default="",
        description="Comma-separated networks (CIDR, e.g. `10.0.0.0/8,192.168.0.0/16`) that "
        "webhook receivers may be in although they are not public addresses (on-premises "
        "receivers); loopback, private, link-local, multicast and reserved addresses are "
        "refused otherwise.",
    )

    max_blob_bytes: int = Field(default=100 * GiB, ge=1)
    max_version_bytes: int = Field(default=100 * GiB, ge=1)
    presign_expires_seconds: int = Field(default=3600, ge=1)
    max_json_bytes: int = Field(
        default=MiB,
        ge=KiB,
        description="Largest request body other than a blob upload or a base model "
        "registration (JSON and forms); larger bodies get a 413 before authentication "
        "and before parsing.",
    )
    max_base_manifest_bytes: int = Field(
        default=256 * MiB,
        ge=KiB,
        description="Largest body of a base model registration (its tensor manifest), "
        "for requests that carry a token; anonymous bodies get the JSON limit.",
    )
    max_adapter_tensors: int = Field(
        default=100_000,
        ge=1,
        description="Most tensors an adapter's safetensors header may list; a push over it "
        "is refused before any per-tensor work.",
    )
    ui_session_hours: float = Field(
        default=24.0 * 7,
        gt=0,
        description="How long a web UI sign-in lasts (signing out, or revoking the token "
        "it used, ends it sooner).",
    )

    @field_validator("webhook_allow_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                try:
                    ipaddress.ip_network(item.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item.strip()!r} is not a network (use CIDR: 10.0.0.0/8)"
                    ) from None
        return value

    @property
    def webhook_allowed_networks(self) -> tuple[IPNetwork, ...]:
        """``webhook_allow_networks`` parsed."""
        return tuple(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in self.webhook_allow_networks.split(",")
            if item.strip()
        )

    vllm_cache_dir: Path | None = Field(
        default=None,
        description="vLLM resolver plugin: where adapters are downloaded (one folder per "
        "version digest); HOME/vllm-adapters when unset.",
    )
    vllm_base: str | None = Field(
        default=None,
        description="vLLM resolver plugin: the registered base the served model is, when "
        "vLLM serves it under another name.",
    )

    hub_multipart_threshold_bytes: int = Field(
        default=5 * GiB,
        ge=1,
        description="Hugging Face Hub protocol: files at least this large are uploaded with "
        "the LFS multipart transfer when the client offers it (else one PUT).",
    )
    hub_multipart_chunk_bytes: int = Field(
        default=512 * MiB,
        ge=5 * MiB,
        description="Hugging Face Hub protocol: the part size of an LFS multipart upload.",
    )
    hub_max_commit_bytes: int = Field(
        default=64 * MiB,
        ge=KiB,
        description="Hugging Face Hub protocol: the largest commit request (NDJSON, with any "
        "small files inline).",
    )

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'loreg.db'}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{self.home / 'blobs'}"
