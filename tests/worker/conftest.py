"""A registry's back end (DB + blob store) seeded through the services, for worker tests.

``stack`` runs on SQLite + a local folder; ``pg_stack`` on PostgreSQL + S3 (moto);
``outage_stack`` on a PostgreSQL cluster of the test's own (``outage_stack.cluster``), which
the test may stop and start, + S3. All give helpers to upload a folder, register a base with
its files, push a PEFT adapter and submit jobs as a user, and build ``loreg worker``
subprocess environments.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loreg.config import Settings
from tests.factories import make_llama, make_lora_adapter
from tests.factories.worker_stack import Models, OutageStack, Stack, make_stack
from tests.fixtures.postgres import PgCluster


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(
        home=tmp_path / "server",
        database_url=None,
        storage_url=None,
        s3_endpoint_url=None,
        job_lease_seconds=5,
        worker_device="cpu",
        worker_poll_seconds=0.1,
    )
    yield from make_stack(settings)


@pytest.fixture
def pg_stack(tmp_path: Path, postgres_url: str, s3_bucket: Any) -> Iterator[Stack]:
    settings = Settings(
        home=tmp_path / "server",
        database_url=postgres_url,
        storage_url=f"s3://{s3_bucket.bucket}/loreg",
        s3_endpoint_url=s3_bucket.endpoint_url,
        s3_region="us-east-1",
        job_lease_seconds=5,
        worker_device="cpu",
        worker_poll_seconds=0.1,
    )
    yield from make_stack(settings)


@pytest.fixture
def outage_stack(tmp_path: Path, pg_cluster: PgCluster, s3_bucket: Any) -> Iterator[OutageStack]:
    settings = Settings(
        home=tmp_path / "server",
        database_url=pg_cluster.create_database(),
        storage_url=f"s3://{s3_bucket.bucket}/loreg",
        s3_endpoint_url=s3_bucket.endpoint_url,
        s3_region="us-east-1",
        job_lease_seconds=10,
        worker_device="cpu",
        worker_poll_seconds=0.1,
    )
    for stack in make_stack(settings):
        yield OutageStack(**vars(stack), cluster=pg_cluster)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    base = make_llama(root / "base", max_shard_size="20KB")
    other = make_llama(root / "other", seed=1)
    adapter = make_lora_adapter(base, root / "adapter", r=4)
    return Models(base, adapter, other)
