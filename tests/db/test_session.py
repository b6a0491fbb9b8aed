"""Engines configured per backend: what each connection is set up with."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from loreg.db.session import create_engine_for


def test_postgres_plans_every_statement_for_its_parameters(postgres_url: str) -> None:
    engine = create_engine_for(postgres_url)
    try:
        for _ in range(2):  # a new connection and one back from the pool
            with engine.connect() as conn:
                assert conn.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
                assert conn.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()


def test_sqlite_enforces_foreign_keys_and_uses_wal(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'sub' / 'loreg.db'}")
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("PRAGMA foreign_keys")) == 1
            assert conn.scalar(text("PRAGMA journal_mode")) == "wal"
    finally:
        engine.dispose()
