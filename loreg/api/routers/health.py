"""Liveness and readiness probes (mounted at the root, outside ``/api/v1``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from loreg.api.errors import error_response
from loreg.api.schemas.common import ErrorResponse
from loreg.api.schemas.health import Health, Readiness
from loreg.services import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    """200 while the process serves requests; checks nothing else (a liveness probe)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and store are reachable",
    responses={503: {"model": ErrorResponse, "description": "Not ready"}},
)
def readyz(request: Request) -> Readiness | JSONResponse:
    """200 when the database and the blob store answer; 503 with what failed otherwise (a
    readiness probe).
    """
    checks = readiness.check(request.app.state.engine, request.app.state.store)
    if any(v != "ok" for v in checks.values()):
        return error_response(503, "unavailable", "not ready", checks)
    return Readiness(status="ok", checks=checks)
