"""Alembic environment: the target is ``loreg.db`` metadata; the URL comes from the caller.

``loreg.db.migrate`` passes the URL in ``config.attributes["url"]``. Developers running the
``alembic`` command (repo-root alembic.ini) pass it with ``-x url=...`` or
``LOREG_DATABASE_URL`` via the settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from loreg.db import create_engine_for, metadata

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return str(url)
    from loreg.config import Settings  # developer entry point only

    return Settings().effective_database_url


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine_for(_url())
    try:
        with engine.connect() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
