"""The one place that maps errors to HTTP: domain errors, validation errors, everything else.

Every error answer has the body ``{"error": {"code", "message", "details"}}`` (docs/design.md
§8). Anything unexpected is logged with its stack trace and the request id, and the
client gets a generic 500 in the same shape without any trace; the goal is that no input
ever reaches that path.

Every 503 (the database or the store cannot be reached) carries ``Retry-After``, so clients
and proxies back off and come back instead of giving up: an outage of a backing service is
a wait, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from loreg.errors import (
    Conflict,
    Incompatible,
    InvalidInput,
    LoregError,
    NotFound,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("loreg.api")

STATUS_BY_ERROR: dict[type, int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Incompatible: 422,
    Unavailable: 503,
}

# Codes for errors that do not come from loreg.errors (routing, HTTP-level problems).
CODE_BY_STATUS: dict[int, str] = {
    400: InvalidInput.code,
    401: Unauthenticated.code,
    403: PermissionDenied.code,
    404: NotFound.code,
    405: "method_not_allowed",
    406: "not_acceptable",
    409: Conflict.code,
    411: "length_required",
    413: TooLarge.code,
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: Incompatible.code,
    503: Unavailable.code,
}


def status_for(exc: LoregError) -> int:
    """HTTP status of a domain error: the nearest mapped class in its MRO (subclasses inherit)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


#: Seconds a 503 asks the client to wait before trying again (``Retry-After``).
RETRY_AFTER_SECONDS = 5


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    out = dict(headers) if headers else {}
    if status == 503 and not any(k.lower() == "retry-after" for k in out):
        out["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return JSONResponse(error_body(code, message, details), status_code=status, headers=out or None)


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _jsonable(value: Any) -> Any:
    """Details must always serialise; anything exotic becomes its string form."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_jsonable(v) for v in value]
    return str(value)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and why, without echoing the (possibly huge or binary) input back."""
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


async def _loreg_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LoregError)
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, _jsonable(exc.details), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    if any(d["type"] == "json_invalid" for d in details):
        message = "request body is not valid JSON"
    else:
        first = details[0] if details else None
        where = ".".join(first["loc"]) if first else "request"
        message = f"invalid request: {where}: {first['msg']}" if first else "invalid request"
    return error_response(400, InvalidInput.code, message, details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = CODE_BY_STATUS.get(status, "error" if status >= 500 else "http_error")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    message = exc.detail if isinstance(exc.detail, str) else phrase
    details = None if isinstance(exc.detail, str) else _jsonable(exc.detail)
    return error_response(status, code, message, details, exc.headers)


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    """A uniqueness race that a service's own check could not see: the loser gets a 409."""
    log.warning(
        "integrity error (request id %s): %s",
        request_id_of(request),
        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
    )
    return error_response(409, Conflict.code, "the request conflicts with a concurrent change")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Connection-level database failures are 503 (retry later); anything else is a bug."""
    assert isinstance(exc, DBAPIError)
    if isinstance(exc, DataError):
        # a value the database cannot store (NUL in text, a number out of range): the
        # schemas should have refused it; this keeps it a 400 where one slipped through
        log.warning(
            "database refused a value (request id %s): %s",
            request_id_of(request),
            type(exc.orig).__name__,
        )
        return error_response(400, InvalidInput.code, "a value in the request cannot be stored")
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        log.warning(
            "database unavailable (request id %s): %s",
            request_id_of(request),
            type(exc.orig).__name__,
        )
        return error_response(503, Unavailable.code, "the database is unavailable")
    raise exc


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    """No database connection became free in time (the database is slow or down): 503."""
    log.warning("database connection pool timed out (request id %s)", request_id_of(request))
    return error_response(503, Unavailable.code, "the database is unavailable")


def internal_error_response(request_id: str | None) -> JSONResponse:
    """The generic 500: says which request failed so an operator can find the logged trace."""
    return error_response(
        500,
        "internal_error",
        "internal server error",
        {"request_id": request_id} if request_id else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LoregError, _loreg_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
