"""Liveness and readiness probes (mounted at the root, outside ``/api/v1``)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from loreg.api.errors import error_response
from loreg.api.schemas.common import ErrorResponse
from loreg.api.schemas.health import Health, Readiness

log = logging.getLogger("loreg.api")

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    """200 while the process serves requests; checks nothing else (a liveness probe)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="The database and store are reachable",
            responses={503: {"model": ErrorResponse, "description": "Not ready"}})
def readyz(request: Request) -> Readiness | JSONResponse:
    """200 when the database and the blob store answer; 503 with what failed otherwise (a
    readiness probe).
    """
    checks: dict[str, str] = {}
    engine: Engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", exc)
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        request.app.state.store.check()
        checks["store"] = "ok"
    except Exception as exc:
        log.warning("readiness: store unreachable: %s", exc)
        checks["store"] = f"unavailable: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        return error_response(503, "unavailable", "not ready", checks)
    return Readiness(status="ok", checks=checks)
