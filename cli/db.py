"""``loreg db ...``: schema migrations."""

from __future__ import annotations

import click

from registry.config import Settings


@click.group()
def db() -> None:
    """Manage the metadata database."""


@db.command()
def upgrade() -> None:
    """Apply all migrations to the configured database."""
    from registry.db.migrate import upgrade as run_upgrade

    settings = Settings()
    run_upgrade(settings.effective_database_url)
    click.echo(f"database at {settings.effective_database_url} is up to date")
