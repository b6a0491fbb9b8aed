"""Token ``last_used_at`` bookkeeping, off the request path.

Authenticating is a pure read (``loreg.services.accounts.authenticate``); a request whose
token was last recorded more than ``LAST_USED_RESOLUTION`` ago notes the use here, and a
background thread writes the noted uses in one short transaction of its own, at most
``interval`` seconds later (and once more at shutdown). So a read request never writes,
never waits for a write, and never fails because one failed; under load a token costs at
most one small ``UPDATE`` a minute per API process.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from loreg.services import accounts

log = logging.getLogger("loreg.api")

#: How long a noted use may wait before it is written (seconds).
FLUSH_INTERVAL = 2.0


class TokenUses:
    """Noted token uses of one API process, written in the background."""

    def __init__(self, maker: sessionmaker[Session], *, interval: float = FLUSH_INTERVAL) -> None:
        self.maker = maker
        self.interval = interval
        self._pending: dict[int, datetime] = {}
        self._recent: dict[int, datetime] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, token_id: int, at: datetime) -> None:
        """Remember that ``token_id`` was used at ``at`` (cheap; no I/O)."""
        with self._lock:
            last = self._recent.get(token_id)
            if last is not None and at - last < accounts.LAST_USED_RESOLUTION:
                return  # already noted this minute by this process
            self._recent[token_id] = at
            self._pending[token_id] = at
            if self._thread is None and not self._stopping.is_set():
                self._start()
        self._wake.set()

    def flush(self) -> None:
        """Write what is pending now (the token list calls this so it shows its own use)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        with self._write_lock:
            try:
                with self.maker() as session:
                    accounts.record_token_uses(session, pending)
                    session.commit()
            except SQLAlchemyError as exc:  # the database is away: try again later
                log.warning("could not record the last use of %d token(s): %s", len(pending), exc)
                with self._lock:
                    for token_id, at in pending.items():
                        if self._pending.get(token_id, at) <= at:
                            self._pending[token_id] = at
                        self._recent.pop(token_id, None)

    def _start(self) -> None:
        """Started by the first use noted (so an app that never serves starts nothing)."""
        self._thread = threading.Thread(target=self._run, name="loreg-token-uses", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is left."""
        with self._lock:
            self._stopping.set()
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            if self._stopping.wait(self.interval):
                return
            self._wake.clear()
            self.flush()
            with self._lock:  # forget old entries so the map stays small
                if len(self._recent) > 10_000:
                    self._recent.clear()
