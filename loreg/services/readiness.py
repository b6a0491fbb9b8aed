"""Whether this process can do its work: the database and the blob store answer."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, text

from loreg.storage import BlobStore

log = logging.getLogger("loreg.api")


def check(engine: Engine, store: BlobStore) -> dict[str, str]:
    """``{"database": ..., "store": ...}``: ``ok``, or ``unavailable: <error type>``."""
    checks: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", exc)
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        store.check()
        checks["store"] = "ok"
    except Exception as exc:
        log.warning("readiness: store unreachable: %s", exc)
        checks["store"] = f"unavailable: {type(exc).__name__}"
    return checks
