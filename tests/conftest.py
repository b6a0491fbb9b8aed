"""Shared fixtures: real PostgreSQL and a real S3-compatible server, started per session."""

from __future__ import annotations

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.s3", "tests.fixtures.api"]
