"""JSON log lines carry request ids (from the API's context) and job ids."""

from __future__ import annotations

import io
import json
import logging

from loreg.logging import JsonFormatter, configure_logging, job_id_var, request_id_var


def _line(**extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.loreg.logging")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("hello %s", "world", extra=extra)
    finally:
        log.removeHandler(handler)
    result: dict[str, object] = json.loads(stream.getvalue())
    return result


def test_plain_line() -> None:
    doc = _line()
    assert doc["message"] == "hello world" and doc["level"] == "info" and doc["event"] == "log"
    assert doc["logger"] == "test.loreg.logging" and "ts" in doc
    assert "request_id" not in doc and "job_id" not in doc


def test_request_and_job_ids_from_context() -> None:
    token = request_id_var.set("req-123")
    job_token = job_id_var.set("job-9")
    try:
        doc = _line(route="/api/v1/x")
    finally:
        request_id_var.reset(token)
        job_id_var.reset(job_token)
    assert doc["request_id"] == "req-123" and doc["job_id"] == "job-9"
    assert doc["route"] == "/api/v1/x"


def test_json_messages_are_merged() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    record = logging.LogRecord(
        "loreg.worker",
        logging.INFO,
        __file__,
        1,
        json.dumps({"event": "job.start", "job_id": "j1"}),
        None,
        None,
    )
    handler.emit(record)
    doc = json.loads(stream.getvalue())
    assert doc["event"] == "job.start" and doc["job_id"] == "j1" and "message" not in doc


def test_configure_logging_is_idempotent() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure_logging("warning", stream=io.StringIO())
        configure_logging("warning", stream=io.StringIO())
        ours = [h for h in root.handlers if getattr(h, "_loreg", False)]
        assert len(ours) == 1
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)
