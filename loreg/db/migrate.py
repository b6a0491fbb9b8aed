"""Schema migrations driven from code: no alembic.ini needed at runtime.

The Alembic config is built here, pointing at the installed ``migrations`` package, with the
database URL passed in (never read from the environment).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from loreg import migrations
from loreg.db.session import create_engine_for


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url``; ``migrations/env.py`` reads the URL from its attributes."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; a no-op when it is there already."""
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None for an unmigrated database."""
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def is_up_to_date(url: str) -> bool:
    """True when the database is at the newest revision (the server refuses to start otherwise)."""
    return current(url) == head()
