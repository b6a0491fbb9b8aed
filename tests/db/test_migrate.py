"""Migrations: they build exactly the models' schema, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect

from loreg.cli.main import cli
from loreg.db import create_engine_for, metadata
from loreg.db.migrate import alembic_config, current, head, is_up_to_date, upgrade


def test_migrations_match_models(db_url: str) -> None:
    upgrade(db_url)
    engine = create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_reports_revision(db_url: str) -> None:
    assert current(db_url) is None
    assert not is_up_to_date(db_url)
    upgrade(db_url)
    upgrade(db_url)
    assert current(db_url) == head() is not None
    assert is_up_to_date(db_url)


def test_downgrade_to_base_removes_every_table(db_url: str) -> None:
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "base")
    engine = create_engine_for(db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(db_url)
    assert current(db_url) == head()


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home" / "loreg"
    monkeypatch.setenv("LOREG_HOME", str(home))
    monkeypatch.delenv("LOREG_DATABASE_URL", raising=False)
    return home


def test_cli_db_upgrade_creates_sqlite_file_and_is_idempotent(fresh_home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert (fresh_home / "loreg.db").is_file()
    assert "up to date" in first.output

    again = runner.invoke(cli, ["db", "upgrade", "--json"])
    assert again.exit_code == 0, again.output
    doc = json.loads(again.output)
    assert doc["revision"] == head()
    assert doc["database_url"].endswith("loreg.db")

    shown = runner.invoke(cli, ["db", "current", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["revision"] == json.loads(shown.output)["head"]
