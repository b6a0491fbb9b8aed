"""Domain events for webhooks, written to the outbox in the caller's transaction.

``emit`` only adds a row to the caller's session: the event commits with the change it
describes, or disappears with it on rollback. Nothing is sent here; the worker's delivery
pass (``loreg.background.webhooks.deliver_pending``) fans committed events out to the
namespace's webhooks and posts them. Services call ``emit`` with one line, e.g.::

    events.emit(session, events.VERSION_CREATED, adapter.namespace, events.version_payload(v))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db.models import Adapter, AdapterVersion, Job, Namespace, Tag
from loreg.db.webhooks import WebhookEvent
from loreg.errors import InvalidInput

VERSION_CREATED = "version.created"
VERSION_VALIDATED = "version.validated"
TAG_MOVED = "tag.moved"
JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
#: sent only by the test-delivery endpoint, to one webhook
PING = "ping"

#: What a webhook may subscribe to (``"*"`` subscribes to all of them).
EVENT_TYPES: frozenset[str] = frozenset(
    {VERSION_CREATED, VERSION_VALIDATED, TAG_MOVED, JOB_SUCCEEDED, JOB_FAILED}
)
ALL_TYPES: frozenset[str] = EVENT_TYPES | {PING}


def _json_safe(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A plain JSON document (datetimes as ISO strings), checked now rather than at delivery."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    result: dict[str, Any] = json.loads(json.dumps(dict(payload), default=default))
    return result


def _namespace_id(session: Session, namespace: Namespace | int | str | None) -> int | None:
    if namespace is None or isinstance(namespace, int):
        return namespace
    if isinstance(namespace, Namespace):
        if namespace.id is None:
            session.flush()
        return namespace.id
    found = session.scalar(select(Namespace.id).where(Namespace.name == namespace))
    if found is None:
        raise InvalidInput(f"no namespace '{namespace}'", details={"namespace": namespace})
    return found


def emit(
    session: Session,
    event_type: str,
    namespace: Namespace | int | str | None,
    payload: Mapping[str, Any],
) -> WebhookEvent:
    """Add an event to the outbox in ``session``'s transaction (the caller commits).

    ``namespace`` (object, id or name) decides whose webhooks receive it; ``None`` means
    nobody's (the event is still recorded).
    """
    if event_type not in ALL_TYPES:
        raise InvalidInput(
            f"unknown event type '{event_type}'",
            details={"event_type": event_type, "known": sorted(ALL_TYPES)},
        )
    event = WebhookEvent(
        type=event_type, namespace_id=_namespace_id(session, namespace), payload=_json_safe(payload)
    )
    session.add(event)
    session.flush()
    return event


# --------------------------------------------------------------------------- payloads


def version_payload(version: AdapterVersion) -> dict[str, Any]:
    """What receivers learn about a version: its references, digest, state and shape."""
    adapter = version.adapter
    ns = adapter.namespace.name
    return {
        "adapter": f"{ns}/{adapter.name}",
        "namespace": ns,
        "name": adapter.name,
        "version": version.number,
        "ref": f"{ns}/{adapter.name}@{version.number}",
        "digest": version.digest,
        "base_model": version.base_model.name if version.base_model is not None else None,
        "r": version.r,
        "lora_alpha": version.lora_alpha,
        "size_bytes": version.size_bytes,
        "labels": dict(version.labels or {}),
        "validation_state": version.validation_state,
        "created_at": version.created_at,
    }


def validated_payload(version: AdapterVersion) -> dict[str, Any]:
    payload = version_payload(version)
    report = version.validation_report or {}
    payload["valid"] = version.validation_state == "valid"
    payload["report_summary"] = {k: report[k] for k in ("ok", "errors", "summary") if k in report}
    return payload


def _tag_document(
    adapter: Adapter, tag: str, version: AdapterVersion, previous: int | None
) -> dict[str, Any]:
    ns = adapter.namespace.name
    return {
        "adapter": f"{ns}/{adapter.name}",
        "namespace": ns,
        "name": adapter.name,
        "tag": tag,
        "ref": f"{ns}/{adapter.name}:{tag}",
        "version": version.number,
        "version_ref": f"{ns}/{adapter.name}@{version.number}",
        "digest": version.digest,
        "previous_version": previous,
    }


def tag_moved(
    session: Session, tag: Tag, previous_version_id: int | None = None
) -> WebhookEvent | None:
    """``tag.moved`` for a tag set or moved (nothing when it already pointed there)."""
    if previous_version_id == tag.version_id:
        return None
    previous = None
    if previous_version_id is not None:
        previous = session.scalar(
            select(AdapterVersion.number).where(AdapterVersion.id == previous_version_id)
        )
    version = session.get(AdapterVersion, tag.version_id)
    adapter = session.get(Adapter, tag.adapter_id)
    assert version is not None and adapter is not None
    return emit(
        session, TAG_MOVED, adapter.namespace, _tag_document(adapter, tag.name, version, previous)
    )


def tags_moved(
    session: Session, adapter: Adapter, version: AdapterVersion, names: Sequence[str]
) -> None:
    """``tag.moved`` for each tag a push pointed at ``version``."""
    for name in names:
        emit(session, TAG_MOVED, adapter.namespace, _tag_document(adapter, name, version, None))


def job_payload(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "type": job.type,
        "status": job.status,
        "attempts": job.attempts,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def job_finished(session: Session, job: Job) -> Job:
    """``job.succeeded`` / ``job.failed`` if the job just reached that state; returns the
    job, so a service can wrap its ``return`` in it."""
    kind = {"succeeded": JOB_SUCCEEDED, "failed": JOB_FAILED}.get(job.status)
    if kind is not None:
        emit(session, kind, job.namespace_id, job_payload(job))
    return job


def version_created(session: Session, version: AdapterVersion) -> None:
    emit(session, VERSION_CREATED, version.adapter.namespace, version_payload(version))


def version_validated(session: Session, version: AdapterVersion) -> None:
    emit(session, VERSION_VALIDATED, version.adapter.namespace, validated_payload(version))
