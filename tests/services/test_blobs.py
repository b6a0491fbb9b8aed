"""Blob rows: which digests are recorded (a worker removes only the uploads nothing records)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from loreg.digests import sha256_digest
from loreg.services import blobs
from tests.factories.db import make_blob


def test_recorded_digests(session: Session) -> None:
    kept = [make_blob(session, f"blob {i}".encode()).digest for i in range(3)]
    stray = sha256_digest(b"uploaded, never recorded")
    assert blobs.recorded(session, [*kept, stray, kept[0]]) == set(kept)
    assert blobs.recorded(session, []) == set()
