"""``loreg db ...``: schema migrations."""

from __future__ import annotations

import json

import click

from loreg.cli import extras
from loreg.config import Settings


def _shown(url: str) -> str:
    """The URL without its password, fit to print."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group()
def db() -> None:
    """Manage the metadata database."""


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def upgrade(as_json: bool) -> None:
    """Apply all migrations to the configured database (safe to run again)."""
    extras.require("server", "db upgrade")
    from loreg.db.migrate import current
    from loreg.db.migrate import upgrade as run_upgrade

    settings = Settings()
    url = settings.effective_database_url
    run_upgrade(url)
    revision = current(url)
    if as_json:
        click.echo(json.dumps({"database_url": _shown(url), "revision": revision}))
    else:
        click.echo(f"database at {_shown(url)} is up to date (revision {revision})")


@db.command(name="current")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def current_cmd(as_json: bool) -> None:
    """Show the configured database's schema revision and the newest one this code knows."""
    extras.require("server", "db current")
    from loreg.db.migrate import current, head

    url = Settings().effective_database_url
    revision, newest = current(url), head()
    if as_json:
        click.echo(json.dumps({"database_url": _shown(url), "revision": revision, "head": newest}))
    else:
        state = "up to date" if revision == newest else f"behind (head is {newest})"
        click.echo(f"{_shown(url)}: revision {revision or 'none'}, {state}")
