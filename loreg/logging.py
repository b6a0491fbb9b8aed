"""Structured logs: one JSON object per line, with the request id and job id when known.

``configure_logging`` is called once by ``loreg serve`` and ``loreg worker``. Every record
becomes ``{"ts", "level", "logger", "event", "message", ...}`` (``event`` is ``"log"`` for
plain messages, so every line has one) plus:

- ``request_id``: the API request being served (``X-Request-ID``), from
  :data:`request_id_var`, which the API's middleware sets, so any log line made while
  handling a request carries it;
- ``job_id``: the job being run, from :data:`job_id_var` (set it around a job's work) or
  from the record's own fields;
- any ``extra={...}`` fields given to the logging call;
- messages that are themselves JSON objects (the worker's event lines) are merged in, not
  quoted.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: The API request a log line belongs to (the API's request-context middleware sets it).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "loreg_request_id", default=None
)

#: The job a log line belongs to (the worker sets it while running a job).
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "loreg_job_id", default=None
)

_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        parsed: Any = None
        if message.startswith("{") and message.endswith("}"):
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict):
            doc.update(parsed)
        else:
            doc["message"] = message
        doc.setdefault("event", getattr(record, "event", None) or "log")
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc.setdefault(key, value)
        if doc.get("request_id") is None and (rid := request_id_var.get()) is not None:
            doc["request_id"] = rid
        if doc.get("job_id") is None and (jid := job_id_var.get()) is not None:
            doc["job_id"] = jid
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in doc.items() if v is not None}, default=str)


def configure_logging(level: str | int = "info", *, stream: TextIO | None = None) -> None:
    """JSON lines on stderr for the root logger (idempotent: replaces its own handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_loreg", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._loreg = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
