"""What went wrong in a job, and how long to wait before trying again.

A job's failure is one of three kinds, and the worker treats each differently:

- ``DATABASE``: the metadata database could not be reached (connection refused or dropped,
  a restart, a pool timeout, SQLite busy). Nothing is wrong with the job: the worker waits
  for the database and hands the job back without counting the attempt.
- ``INFRASTRUCTURE``: the blob store, the network, the disk or the device failed (a store
  error, ``OSError``, out of memory), or a concurrent writer won a race for a row (an
  integrity error: the next try sees its row). Another try may succeed: the job is retried,
  and the attempt counts unless the store is found down (then it is an outage, like the
  database).
- ``DETERMINISTIC``: anything else: an input the job cannot use (loreg's input errors), a
  missing module, a bug. The same code on the same input fails the same way, so the job
  fails at once instead of burning its attempts.
"""

from __future__ import annotations

import random
from enum import Enum

from sqlalchemy import exc as sa_exc

from loreg.errors import LoregError, Unavailable
from loreg.storage.base import StorageUnavailable


class Fault(Enum):
    DATABASE = "database"
    INFRASTRUCTURE = "infrastructure"
    DETERMINISTIC = "deterministic"


#: Exception type names (anywhere in the MRO) of infrastructure failures raised by libraries
#: the worker does not import itself: CUDA out of memory, botocore and httpx transport errors.
_INFRA_TYPE_NAMES = frozenset(
    {"OutOfMemoryError", "BotoCoreError", "ClientError", "TransportError"}
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during (cycles cut)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen) and len(seen) < 16:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_database_down(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    # the driver's own errors, when they escape SQLAlchemy's wrapping (psycopg, sqlite3)
    module = type(exc).__module__ or ""
    return type(exc).__name__ in ("OperationalError", "InterfaceError") and (
        module.startswith("psycopg") or module == "sqlite3"
    )


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached."""
    return any(_is_database_down(e) for e in _chain(exc))


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the blob store failing."""
    return any(isinstance(e, StorageUnavailable) for e in _chain(exc))


def classify(exc: BaseException) -> Fault:
    """The kind of a job's failure (see the module docstring)."""
    chain = _chain(exc)
    if any(_is_database_down(e) for e in chain):
        return Fault.DATABASE
    first = chain[0]
    if isinstance(first, LoregError):
        return Fault.INFRASTRUCTURE if isinstance(first, Unavailable) else Fault.DETERMINISTIC
    for e in chain:
        if isinstance(e, Unavailable | OSError | MemoryError | sa_exc.IntegrityError):
            return Fault.INFRASTRUCTURE
        if any(t.__name__ in _INFRA_TYPE_NAMES for t in type(e).__mro__):
            return Fault.INFRASTRUCTURE
    return Fault.DETERMINISTIC


class Backoff:
    """Waits that double from ``first`` up to ``maximum`` seconds (with +-20 % jitter, so a
    fleet does not retry in step); ``reset()`` after a success."""

    def __init__(self, first: float, maximum: float) -> None:
        self.first = max(0.01, min(first, maximum))
        self.maximum = maximum
        self.tries = 0

    def next(self) -> float:
        delay = min(self.maximum, self.first * 2 ** min(self.tries, 30))
        self.tries += 1
        return delay * (0.8 + 0.4 * random.random())

    def reset(self) -> None:
        self.tries = 0
