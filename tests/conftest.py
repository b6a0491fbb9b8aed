"""Shared fixtures: real PostgreSQL and S3-compatible servers (started once per session),
migrated databases on both dialects, a live API, a webhook receiver. See tests/fixtures/."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.db",
    "tests.fixtures.api",
    "tests.fixtures.webhooks",
    "tests.fixtures.models",
]
