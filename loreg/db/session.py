"""Engines and sessions for SQLite (the embedded default) and PostgreSQL (teams)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

#: How long a SQLite connection waits for another writer before failing (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long opening a PostgreSQL connection may take before it fails (seconds).
PG_CONNECT_TIMEOUT_SECONDS = 10


def create_engine_for(url: str, **kwargs: Any) -> Engine:
    """An engine configured for the URL's backend.

    SQLite: WAL journal (readers do not block the writer), foreign keys ON (SQLite ignores
    them otherwise), a busy timeout so concurrent API and worker writers wait instead of
    failing, and the parent folder created for file databases. In-memory databases share
    one connection across threads. PostgreSQL: ``pool_pre_ping`` so connections dropped by
    a restart or a proxy are replaced transparently, and a connect timeout so that an
    unreachable server (packets dropped, not refused) fails a connection attempt in seconds
    instead of the operating system's minutes. Every statement is planned for its own
    parameters (``plan_cache_mode``): a search's generic plan, which the server would
    otherwise settle on after a few runs of one statement, walks the newest adapters until
    the page is full, a cost that grows with the registry when a filter matches few rows.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        memory = not database or database == ":memory:" or "mode=memory" in str(parsed)
        connect_args: dict[str, Any] = {
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "check_same_thread": False,
        }
        connect_args.update(kwargs.pop("connect_args", {}))
        if memory:
            kwargs.setdefault("poolclass", StaticPool)
        elif database:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa_create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_SECONDS, **kwargs.pop("connect_args", {})}
    engine = sa_create_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _postgres_on_connect)
    return engine


def _postgres_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()  # outside any transaction the pool will begin


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (services return them)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_postgres(session: Session) -> bool:
    """Whether ``session`` talks to PostgreSQL (row locks, advisory locks, SKIP LOCKED)."""
    return session.get_bind().dialect.name == "postgresql"


def dialect_insert(session: Session) -> Any:
    """The dialect's ``insert`` construct, which has ``on_conflict_do_nothing``.

    Both dialects we support spell the conflict clause the same way, so callers write one
    statement for both.
    """
    return pg_insert if is_postgres(session) else sqlite_insert
