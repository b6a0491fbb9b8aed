"""Classifying a job's failure: the database gone (real connection errors), infrastructure
(store, disk, races), deterministic (bad input, missing module, bugs); and the backoff."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from loreg.db import create_engine_for
from loreg.errors import Incompatible, InvalidInput, NotFound
from loreg.storage.base import StorageUnavailable
from loreg.worker.faults import (
    Backoff,
    Fault,
    classify,
    database_unavailable,
    store_unavailable,
)
from tests.fixtures.postgres import free_port


def _refused_connection() -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL is not there (a real refused connection)."""
    engine = create_engine_for(f"postgresql+psycopg://loreg@127.0.0.1:{free_port()}/x")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("connecting to a closed port succeeded")


def _duplicate_row(tmp_path: Path) -> IntegrityError:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
    except IntegrityError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a duplicate key was accepted")


def test_database_gone_is_an_outage() -> None:
    exc = _refused_connection()
    assert database_unavailable(exc)
    assert classify(exc) is Fault.DATABASE
    # also when a handler wrapped it in its own error
    try:
        try:
            raise exc
        except OperationalError as inner:
            raise RuntimeError("could not read the base's files") from inner
    except RuntimeError as wrapped:
        assert classify(wrapped) is Fault.DATABASE


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("Numpy is not available"),
        ModuleNotFoundError("No module named 'numpy'"),
        ValueError("bad shape"),
        KeyError("model.layers.0.self_attn.q_proj.weight"),
        InvalidInput("bad parameters"),
        Incompatible("adapter does not fit"),
        NotFound("version not found"),
    ],
)
def test_deterministic_errors_fail_at_once(exc: Exception) -> None:
    assert classify(exc) is Fault.DETERMINISTIC
    assert not database_unavailable(exc)


def test_infrastructure_errors_retry(tmp_path: Path) -> None:
    store = StorageUnavailable("blob store unreachable")
    assert classify(store) is Fault.INFRASTRUCTURE and store_unavailable(store)
    assert classify(OSError(errno.ENOSPC, "No space left on device")) is Fault.INFRASTRUCTURE
    assert classify(ConnectionResetError()) is Fault.INFRASTRUCTURE
    assert classify(MemoryError()) is Fault.INFRASTRUCTURE
    race = _duplicate_row(tmp_path)
    assert classify(race) is Fault.INFRASTRUCTURE and not database_unavailable(race)
    assert not store_unavailable(OSError())


def test_backoff_doubles_up_to_its_bound() -> None:
    b = Backoff(0.5, 4.0)
    waits = [b.next() for _ in range(8)]
    for got, base in zip(waits, [0.5, 1, 2, 4, 4, 4, 4, 4], strict=True):
        assert 0.8 * base <= got <= 1.2 * base
    b.reset()
    assert b.next() <= 0.6
