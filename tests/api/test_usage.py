"""Token last-use bookkeeping: noted cheaply, written in the background, at most once a
minute per token, never moved back, kept when the database is away."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loreg.api.usage import TokenUses
from loreg.db import ApiToken, create_engine_for, make_sessionmaker
from loreg.services import accounts
from tests.factories.db import make_user


def _token(maker: sessionmaker[Session]) -> int:
    with maker() as s:
        token, _value = accounts._issue_token(s, make_user(s), "t", "read", None)
        s.commit()
        return token.id


def _last_used(maker: sessionmaker[Session], token_id: int) -> datetime | None:
    with maker() as s:
        return s.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token_id))


def test_uses_are_written_in_the_background(maker: sessionmaker[Session]) -> None:
    token_id = _token(maker)
    uses = TokenUses(maker, interval=0.05)
    t0 = datetime.now(UTC)
    uses.note(token_id, t0)
    uses.note(token_id, t0 + timedelta(seconds=5))  # same minute: not even noted
    deadline = time.monotonic() + 10
    while _last_used(maker, token_id) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _last_used(maker, token_id) == t0
    later = t0 + timedelta(minutes=2)
    uses.note(token_id, later)
    uses.stop()  # writes what is left
    assert _last_used(maker, token_id) == later


def test_a_failed_write_is_kept_for_the_next_one(
    maker: sessionmaker[Session], tmp_path: Path
) -> None:
    token_id = _token(maker)
    broken = create_engine_for(f"sqlite:///{tmp_path / 'no-tables.db'}")  # every write fails
    uses = TokenUses(make_sessionmaker(broken), interval=3600)
    at = datetime.now(UTC)
    uses.note(token_id, at)
    uses.flush()  # fails (logged), keeps the use
    uses.maker = maker
    uses.flush()
    assert _last_used(maker, token_id) == at
    uses.stop()
    broken.dispose()
